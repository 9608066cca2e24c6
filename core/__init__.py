"""The Dreamsmith engine: no bpy here (tests/core/test_no_bpy.py holds it)."""
