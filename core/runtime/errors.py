"""The one small family of errors a user can fix.

Every message says what to do. The CLI maps these to exit code 2; the Blender add-on shows the
message in a report. Anything that is not a ``DreamsmithError`` is a bug.
"""

from __future__ import annotations

import errno
import sys

from ...protocol import DEPENDENCIES


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


class EngineMissing(DreamsmithError):
    """The Python running the engine lacks one of its packages (torch, diffusers, ...): install the engine."""



#: What to lower when memory runs out, in the order that frees the most.
LOWER = ("a smaller preset (--preset draft)", "the texture size (bake.texture_size)",
         "the render size (mesh.render_size, coarse_sds.render_size)")


def as_user_error(exc: BaseException) -> DreamsmithError | None:
    """``exc`` as an error the user can fix, or None for a bug.

    A :class:`DreamsmithError` is itself; a missing engine package is :class:`EngineMissing`; running out of memory
    (CPU ``MemoryError``, CUDA's ``OutOfMemoryError``, the MPS backend's message) or disk space (``ENOSPC``,
    ``EDQUOT``) becomes a :class:`ResourceError` that says what to lower or free.
    """
    if isinstance(exc, DreamsmithError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in {n for n, _ in DEPENDENCIES}:
        import sys

        return EngineMissing(f"The engine's packages are not installed in the Python that runs it ({sys.executable}:"
                             f" no module {exc.name!r}). Install the engine: Edit > Preferences > Add-ons > "
                             f"Dreamsmith > Install Engine (or pip install dreamsmith in that Python).")
    text = str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
            isinstance(exc, RuntimeError) and "out of memory" in text.lower()):
        return ResourceError(f"Out of memory ({text.splitlines()[0][:200] if text else type(exc).__name__}); "
                             f"lower {', '.join(LOWER[:-1])} or {LOWER[-1]}, or close other programs using the "
                             "device.")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        where = f" writing {exc.filename!r}" if exc.filename else ""
        return ResourceError(f"The disk is full{where}; free some space or choose an output folder on another disk "
                             "(nothing was written).")
    return None


def user_error_exit(exc: Exception) -> int:
    """Exit code 2, with the message on stderr, for an error the user can fix; a bug is raised again."""
    error = as_user_error(exc)
    if error is None:
        raise exc
    print(f"error: {error}", file=sys.stderr)
    return 2
