"""The Blender side: the ONLY package that imports bpy (DESIGN.md house rule 1).

``register()`` adds the preferences, the scene properties (``scene.dreamsmith``), the Generate
and Cancel operators and the sidebar panel; ``unregister()`` stops a running job, removes its
timer and takes everything away again, in reverse order. No handlers are added.
"""

from .deps import DREAMSMITH_OT_install_dependencies, stop_install
from .operators import (
    DREAMSMITH_OT_cancel,
    DREAMSMITH_OT_edit,
    DREAMSMITH_OT_generate,
    DREAMSMITH_OT_retexture,
    stop_job,
)
from .panels import DREAMSMITH_PT_generate
from .preferences import DREAMSMITH_OT_check_setup, DREAMSMITH_OT_clear_states, DreamsmithPreferences
from .properties import DreamsmithSceneProps

CLASSES: tuple = (
    DreamsmithPreferences,
    DREAMSMITH_OT_check_setup,
    DREAMSMITH_OT_clear_states,
    DREAMSMITH_OT_install_dependencies,
    DreamsmithSceneProps,
    DREAMSMITH_OT_generate,
    DREAMSMITH_OT_retexture,
    DREAMSMITH_OT_edit,
    DREAMSMITH_OT_cancel,
    DREAMSMITH_PT_generate,
)


def register() -> None:
    """Register ``CLASSES`` in order, then ``Scene.dreamsmith``."""
    import bpy

    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.dreamsmith = bpy.props.PointerProperty(type=DreamsmithSceneProps)


def unregister() -> None:
    """Stop a running job or installation (and their timers), remove ``Scene.dreamsmith``, unregister
    ``CLASSES`` in reverse order."""
    import bpy

    stop_job()
    stop_install()
    del bpy.types.Scene.dreamsmith
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
