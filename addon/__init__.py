"""The Blender side: the ONLY package that imports bpy (tests/core/test_no_bpy.py holds it).

``register()`` adds the preferences, the scene properties (``scene.dreamsmith``: the inputs), the job's
progress (``window_manager.dreamsmith_job``), the operators, the sidebar panels, the entries in Add > Mesh and the
Object menu, and two persistent file-load handlers (a job is cancelled, with a message, when another file is
opened); ``unregister()`` stops a running job or installation, removes their timers, the handlers and the menu
entries, and takes everything away again, in reverse order.
"""

from .deps import DREAMSMITH_OT_cancel_install, DREAMSMITH_OT_install_dependencies, stop_install
from .file_load import on_load_post, on_load_pre
from .history import CLASSES as HISTORY_CLASSES
from .models import CLASSES as MODEL_CLASSES
from .models import stop_download
from .operators import (
    DREAMSMITH_OT_cancel,
    DREAMSMITH_OT_edit,
    DREAMSMITH_OT_generate,
    DREAMSMITH_OT_remove_queued,
    DREAMSMITH_OT_report,
    DREAMSMITH_OT_retexture,
    stop_job,
)
from .panels import MENUS, PANELS
from .preferences import DREAMSMITH_OT_check_setup, DREAMSMITH_OT_clear_states, DreamsmithPreferences
from .properties import DreamsmithJobProps, DreamsmithSceneProps
from .remesh import CLASSES as REMESH_CLASSES

CLASSES: tuple = (
    DreamsmithPreferences,
    DREAMSMITH_OT_check_setup,
    DREAMSMITH_OT_clear_states,
    DREAMSMITH_OT_install_dependencies,
    DREAMSMITH_OT_cancel_install,
    *MODEL_CLASSES,
    DreamsmithSceneProps,
    DreamsmithJobProps,
    DREAMSMITH_OT_generate,
    DREAMSMITH_OT_retexture,
    DREAMSMITH_OT_edit,
    DREAMSMITH_OT_cancel,
    DREAMSMITH_OT_remove_queued,
    DREAMSMITH_OT_report,
    *HISTORY_CLASSES,
    *REMESH_CLASSES,
    *PANELS,
)


def register() -> None:
    """Register ``CLASSES`` in order, then ``Scene.dreamsmith``."""
    import bpy

    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.dreamsmith = bpy.props.PointerProperty(type=DreamsmithSceneProps)
    bpy.types.WindowManager.dreamsmith_job = bpy.props.PointerProperty(type=DreamsmithJobProps)
    for handlers, handler in ((bpy.app.handlers.load_pre, on_load_pre), (bpy.app.handlers.load_post, on_load_post)):
        if handler not in handlers:
            handlers.append(handler)
    for menu, entry in MENUS:
        getattr(bpy.types, menu).append(entry)


def unregister() -> None:
    """Stop a running job or installation (and their timers), remove ``Scene.dreamsmith``, unregister
    ``CLASSES`` in reverse order."""
    import bpy

    stop_job()
    stop_install()
    stop_download()
    for menu, entry in MENUS:
        getattr(bpy.types, menu).remove(entry)
    for handlers, handler in ((bpy.app.handlers.load_pre, on_load_pre), (bpy.app.handlers.load_post, on_load_post)):
        if handler in handlers:
            handlers.remove(handler)
    del bpy.types.WindowManager.dreamsmith_job
    del bpy.types.Scene.dreamsmith
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
