"""Dreamsmith: text to 3D inside Blender.

The repository root is the extension root and the package. ``register()`` and ``unregister()``
delegate to ``addon/``; importing this package imports nothing heavy (no torch, no bpy).
"""

__version__ = "0.1.0"


def register() -> None:
    """Blender entry point: register the add-on's classes."""
    from .addon import register as _register

    _register()


def unregister() -> None:
    """Blender entry point: unregister everything ``register()`` added."""
    from .addon import unregister as _unregister

    _unregister()
