"""A job belongs to the file it was started from: when another file is opened (File > Open, New, Revert, or a
script's ``open_mainfile``), the running job is cancelled before its file goes away, and the file opened says so.

Both handlers are ``@persistent`` (they stay across loads) and are added by :func:`dreamsmith.addon.register`.
"""

import os
import sys

from bpy.app.handlers import persistent

from .properties import job_props, reset_progress
from .running import cancel_current, job_state


@persistent
def on_load_pre(*_args) -> None:
    """``load_pre`` handler (File > Open, New, Revert, also from scripts): a running job is cancelled before its file
    goes away (worker ended, job folder removed, nothing imported into either file); the message waits for
    :func:`on_load_post`."""
    job, meta = job_state.job, job_state.meta
    if job is None:
        return
    where = f"{os.path.basename(meta.blend)!r}" if meta is not None and meta.blend else "the unsaved file"
    what = meta.command if meta is not None else "running"
    cancel_current()
    message = (f"The {what} job was cancelled because another file was opened; it belonged to {where}. Open that "
               f"file and start it again.")
    job_state.after_load = (message, True)
    print(f"Dreamsmith: {message}", file=sys.stderr)


@persistent
def on_load_post(*_args) -> None:
    """``load_post`` handler: show the message of a job the load cancelled in the file now open."""
    pending, job_state.after_load = job_state.after_load, None
    props = job_props()
    if pending is not None and props is not None:
        props.running = False
        reset_progress(props)
        props.message, props.message_is_error = pending
