"""The one small family of errors a user can fix.

Every message says what to do. The CLI maps these to exit code 2; the Blender add-on shows the
message in a report. Anything that is not a ``DreamsmithError`` is a bug.
"""

from __future__ import annotations


class DreamsmithError(Exception):
    """A problem the user can fix; the message says how."""


class InputError(DreamsmithError):
    """Bad input: a missing folder, an unreadable image, an empty prompt, a mesh without faces."""


class ConfigError(DreamsmithError):
    """An unknown preset, an unknown config key or a value of the wrong type."""


class ModelError(DreamsmithError):
    """A model that cannot be found or loaded (missing, offline, not safetensors, not diffusers)."""


class ResourceError(DreamsmithError):
    """Not enough device memory for the chosen preset, or a device that is not available."""


class NumericalError(DreamsmithError):
    """The optimisation diverged (NaN or inf); usually a learning rate or guidance scale too high."""


class Cancelled(DreamsmithError):
    """The job was cancelled by the user; nothing was written."""
