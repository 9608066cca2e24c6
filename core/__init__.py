"""The Dreamsmith engine: no bpy here (DESIGN.md house rule 1)."""
