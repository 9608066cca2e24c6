"""The Blender side: the ONLY package that imports bpy (DESIGN.md house rule 1).

Panels, operators and preferences arrive with the Blender-extension issue; registering this
version adds nothing to Blender and removes nothing.
"""

CLASSES: tuple = ()


def register() -> None:
    """Register ``CLASSES`` in order."""
    import bpy

    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    """Unregister ``CLASSES`` in reverse order."""
    import bpy

    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
