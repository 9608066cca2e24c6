"""The running job seen from Blender: one job at a time (typed state), its timer, live previews, and the import of
its result into the scene.

Interactive Blender: :func:`submit` queues jobs (several prompts or seeds, each selected object to re-texture) and
:func:`start_job` starts the worker of the first and returns at once; a persistent ``bpy.app.timers`` callback
(:func:`job_timer`) drains progress into ``window_manager.dreamsmith_job``, redraws the sidebar, and on "done"
imports the result (then one undo step) and starts the next queued job; a failed job does not stop the rest.
``blender --background``: the operators wait for each worker through the same functions. A job belongs to the file
it was started from: opening another file cancels it and the queue first (:mod:`.file_load`).
"""

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import bpy

from ..protocol import PREVIEW
from .image_source import reference_text
from .job import JOB_PREFIX, Outcome, WorkerJob, build_job, make_work_dir
from .job_inputs import parse_config, write_job_files  # noqa: F401  (parse_config: the add-on's API)
from .job_results import (  # noqa: F401  (PREVIEW_IMAGE, print_stage: the add-on's API)
    PREVIEW_IMAGE,
    load_preview,
    print_stage,
    remove_made_object,
    remove_preview,
    window_override,
)
from .job_results import import_outcome as _import
from .properties import apply_message, job_props, reset_progress
from .redraw import redraw as redraw_areas
from .settings import engine_paths, get_preferences, interpreter, online_access
from .states import job_states, keep_result

TIMER_INTERVAL = 0.2
INPUTS = ("prompt", "negative_prompt", "preset", "seed")
JOBS_FOLDER = "dreamsmith-jobs"


@dataclass
class Request:
    """What the user asked for, kept to start the same job on the next queued object.

    Attributes:
        values: The inputs (``INPUTS``: prompt, negative prompt, preset, seed; for image to 3D also image,
            elevation, fov: :mod:`.image_source`).
        model: The coarse (or only) prior.
        config: Config overrides (JSON object).
        command: ``generate``, ``retexture`` or ``edit``.
    """

    values: dict[str, Any]
    model: str
    config: dict[str, Any]
    command: str = "generate"


@dataclass
class RunningJob:
    """What Blender keeps about the running job besides the worker.

    Attributes:
        request: What was asked for.
        scene: The scene the job was started from.
        blend: The .blend the job was started from ("" when unsaved).
        interactive: Started from the UI (previews, a timer) rather than a script.
        had_preview: A preview image existed before the job (a failed job then leaves it).
        target: The object a re-texture or edit works on ("" for generate).
        info: How the target was exported (:class:`~.mesh_io.ExportInfo`), for putting the result back.
        as_new_object: An edit adds a new object instead of changing the target.
    """

    request: Request
    scene: str
    interactive: bool
    had_preview: bool
    blend: str = ""
    target: str = ""
    info: Any = None
    as_new_object: bool = False

    @property
    def command(self) -> str:
        return self.request.command

    def inputs(self) -> dict[str, Any]:
        """The inputs as the result's custom properties record them."""
        v, r = self.request.values, self.request
        made = {"prompt": v["prompt"], "negative_prompt": v["negative_prompt"], "seed": int(v["seed"]),
                "preset": v["preset"], "command": self.command, "time": time.strftime("%Y-%m-%d %H:%M")}
        # A script's own model and config overrides (the sidebar has neither): Re-roll repeats them.
        if r.model:
            made["model"] = r.model
        if r.config:
            made["config"] = json.dumps(r.config, sort_keys=True)
        return made


@dataclass
class Pending:
    """A queued job.

    Attributes:
        request: What to run.
        target: The object a re-texture or edit works on ("" for generate).
        as_new_object: An edit adds a new object.
    """

    request: Request
    target: str = ""
    as_new_object: bool = False

    @property
    def label(self) -> str:
        """One line for the queue's list: "Generate 'a red cube', seed 7"."""
        v = self.request.values
        what = repr(v.get("prompt") or os.path.basename(v.get("image") or "") or v.get("image_block") or "")
        on = f" on {self.target!r}" if self.target else ""
        verb = {"edit": "Edit with Prompt", "retexture": "Re-texture"}.get(self.request.command, "Generate")
        return f"{verb} {what}{on}, seed {v.get('seed', 0)}"


class _State:
    """The one job of this Blender session and the jobs waiting after it (module state: timers and panels have no
    operator instance)."""

    job: WorkerJob | None = None
    meta: RunningJob | None = None
    queue: list[Pending] = []
    #: The running job's number in this run of the queue, and how many the run has (done, running, waiting).
    number: int = 0
    of: int = 0
    #: When the running job started (``time.monotonic()``; a float property would round it).
    started: float = 0.0
    #: A message for the file being opened (a job cancelled by the load), shown by :func:`.file_load.on_load_post`.
    after_load: tuple[str, bool] | None = None


job_state = _State()


def job_running() -> bool:
    """Whether a job is running (one at a time)."""
    return job_state.job is not None


def current_job() -> WorkerJob | None:
    """The running job, if any."""
    return job_state.job


def _jobs_base(prefs) -> str:
    if prefs.cache_dir:
        return os.path.join(bpy.path.abspath(prefs.cache_dir), JOBS_FOLDER)
    return bpy.app.tempdir or ""


def redraw() -> None:
    """Redraw the 3D Views (the sidebar shows the job)."""
    redraw_areas("VIEW_3D")


def handle_message(msg: dict, props) -> None:
    if props is None:
        return
    apply_message(props, msg)
    # Scripts get no preview images.
    if msg.get("type") == PREVIEW and job_state.meta is not None and job_state.meta.interactive:
        load_preview(str(msg.get("path", "")), props)


def finish_job(outcome: Outcome | None, undo: bool) -> tuple[bool, str]:
    """End the current job: import its result if it succeeded, clean up, update the sidebar.

    Returns:
        Whether an object was added, and the message for the user.
    """
    job, meta, props = job_state.job, job_state.meta, job_props()
    job_state.job = job_state.meta = None
    ok, message = False, "The job ended without a result."
    try:
        if outcome is not None and outcome.ok:
            with bpy.context.temp_override(**window_override()):
                try:
                    obj, done = _import(outcome, meta)
                except Exception as exc:  # whatever went wrong, the result is kept and the user told where
                    kept = keep_result(get_preferences(), outcome.out)
                    where = f"; the result was kept at {kept}" if kept else ""
                    message = f"Importing the result failed ({type(exc).__name__}: {exc}){where}."
                else:
                    ok, message = True, f"{done} {obj.name!r}." + reference_text(outcome.summary or {})
                    if undo:
                        bpy.ops.ed.undo_push(message=f"Dreamsmith {meta.command}")
        elif outcome is not None:
            message = outcome.message
        if not ok and meta is not None and not meta.had_preview:
            remove_preview(props)  # a failed or cancelled job leaves the data-blocks as they were
        if not ok and meta is not None and meta.command == "transfer":
            remove_made_object(meta.target)  # the remeshed copy made for the job: the scene as it was
    finally:
        if job is not None:
            job.cleanup()
        if props is not None:
            props.running = False
            reset_progress(props)
            props.message = message
            props.message_is_error = not ok and (outcome is None or outcome.kind != "Cancelled")
    return ok, message


def _notify(message: str, error: bool) -> None:
    """Tell the user about a job that ended while no operator was running (timer): the status bar (a report), the
    console, and for an error a popup as well."""
    print(f"Dreamsmith: {message}", file=sys.stderr if error else sys.stdout)
    override = window_override()
    if not override:
        return
    with bpy.context.temp_override(**override):
        try:
            bpy.ops.dreamsmith.report("INVOKE_DEFAULT", message=message, error=error)
        except (RuntimeError, AttributeError):  # not registered (tests that drive the module directly)
            pass
        if error:
            def draw(menu, _context):
                menu.layout.label(text=message)

            bpy.context.window_manager.popup_menu(draw, title="Dreamsmith", icon="ERROR")


def job_timer() -> float | None:
    """``bpy.app.timers`` callback: drain progress, finish the job when it has ended, then start the next queued
    one (whatever became of this one)."""
    job = job_state.job
    if job is None:
        return None
    props = job_props()
    try:
        for msg in job.poll():
            handle_message(msg, props)
        redraw()
        if job.outcome is None:
            why = job.stalled()
            if not why:
                return TIMER_INTERVAL
            job.end_stalled(why)
        ok, message = finish_job(job.outcome, undo=True)
        cancelled = job.outcome.kind == "Cancelled"
        _notify(message, error=not ok and not cancelled)
        if start_next(bpy.context):
            return TIMER_INTERVAL
    except Exception as exc:  # a timer must never raise (Blender drops it): end the job and say why
        stop_job()
        redraw()
        _notify(f"The job was stopped after an error in the add-on ({type(exc).__name__}: {exc}).", error=True)
        return None
    redraw()
    return None


def cancel_current() -> None:
    """Cancel the running job (worker ended, job folder removed, nothing imported) and update the sidebar; jobs
    waiting in the queue stay (the timer starts the next)."""
    job = job_state.job
    if job is not None:
        job.cancel()
        finish_job(job.outcome, undo=False)


def clear_queue() -> int:
    """Drop every waiting job; returns how many."""
    dropped, job_state.queue = len(job_state.queue), []
    job_state.of -= dropped
    return dropped


def remove_queued(index: int) -> None:
    """Drop the waiting job at ``index`` (IndexError when there is none)."""
    job_state.queue.pop(index)
    job_state.of -= 1


def stop_job() -> None:
    """Cancel the running job (if any) and the queue, remove the timer, clean up; the scene is left as it was."""
    clear_queue()
    if bpy.app.timers.is_registered(job_timer):
        bpy.app.timers.unregister(job_timer)
    cancel_current()
    job_state.number = job_state.of = 0


def submit(context, jobs: list[Pending]) -> int:
    """Queue ``jobs`` (interactive Blender) and start the first when none runs; returns how many wait now.

    Raises OSError or ValueError (with a message for the user) when the first cannot start; the rest stay queued
    only when a job was already running."""
    if not job_running() and not job_state.queue:
        job_state.number = job_state.of = 0
    job_state.queue.extend(jobs)
    job_state.of += len(jobs)
    if not job_running():
        first = job_state.queue.pop(0)
        try:
            _start_pending(context, first)
        except (OSError, ValueError):
            clear_queue()
            job_state.of = job_state.number
            raise
    return len(job_state.queue)


def _start_pending(context, item: Pending) -> WorkerJob:
    r = item.request
    job_state.number += 1
    return start_job(context, r.values, r.model, r.config, interactive=True, command=r.command,
                     targets=[item.target] if item.target else None, as_new_object=item.as_new_object)


def start_next(context) -> bool:
    """Start the next queued job that can start (one that cannot is skipped, with a message); whether one did."""
    while job_state.queue:
        item = job_state.queue.pop(0)
        try:
            _start_pending(context, item)
            return True
        except (OSError, ValueError) as exc:
            _notify(f"{item.label}: {exc}", error=True)
    job_state.number = job_state.of = 0
    return False


def start_job(context, values: dict, model: str, config: dict, interactive: bool, command: str = "generate",
              targets: list[str] | None = None, as_new_object: bool = False) -> WorkerJob:
    """Start the worker for ``values`` (prompt, negative_prompt, preset, seed; image to 3D: image or image_block,
    elevation, fov) and make it the current job.

    ``retexture`` and ``edit`` work on the first of ``targets`` (object names; queue one job per object with
    :func:`submit`). Interactive: previews are requested and :func:`job_timer` is registered to drive the job.
    Raises OSError (interpreter or folder) or ValueError (object) with a message for the user; nothing is left
    behind then.
    """
    prefs = get_preferences(context)
    model = model or prefs.coarse_model
    cache_dir = bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else ""
    target = targets[0] if targets else ""
    if command != "generate":
        from .mesh_io import check_target

        problem = check_target(bpy.data.objects.get(target))
        if problem:
            raise ValueError(problem)
    try:
        work_dir = make_work_dir(_jobs_base(prefs))
    except OSError as exc:
        raise OSError(f"Cannot create a job folder under {_jobs_base(prefs)!r} ({exc}); choose a writable cache "
                      "folder in the add-on preferences.") from exc
    mesh_path, info, config, values = write_job_files(command, target, work_dir, dict(config), values)
    request = Request(values, model, dict(config), command)
    out = work_dir / ("result.obj" if command in ("retexture", "transfer") else "result.glb")
    state, state_out, world = job_states(prefs, command, target, work_dir.name.removeprefix(JOB_PREFIX))
    inputs = dict(values, mesh=mesh_path, state=state, state_out=state_out, world=world,
                  target=work_dir / "target.obj" if command == "transfer" else None)
    job = WorkerJob(build_job(
        command, out, inputs, preset=values["preset"], seed=values["seed"], model=model,
        fine_model=prefs.fine_model if command in ("generate", "edit") else "", device=prefs.device,
        preview=work_dir / "preview.png" if interactive else None, config=config,
        allow_network=online_access(prefs), cache_dir=cache_dir),
        interpreter(prefs), work_dir, python_paths=engine_paths(prefs))
    try:
        job.start()
    except OSError as exc:
        job.cleanup()
        raise OSError(f"Cannot start the engine with {job.python!r} ({exc}); set the Python path in the add-on "
                      "preferences and use Check setup.") from exc
    job_state.job = job
    job_state.meta = RunningJob(request, context.scene.name, interactive, PREVIEW_IMAGE in bpy.data.images,
                                bpy.data.filepath, target, info, as_new_object)
    props = job_props(context)
    props.running, props.message, props.message_is_error = True, "", False
    reset_progress(props)
    props.command, job_state.started = command, time.monotonic()
    props.estimate = ""
    if interactive:  # the sidebar asked for it before the job (the whole-job bar weighs the stages by it)
        from .engine_status import estimate

        cost = estimate(prefs, command, values["preset"], model,
                        prefs.fine_model if command in ("generate", "edit") else "")
        props.estimate = json.dumps(cost) if cost and "error" not in cost else ""
    if interactive and not bpy.app.timers.is_registered(job_timer):
        bpy.app.timers.register(job_timer, first_interval=TIMER_INTERVAL, persistent=True)
    return job

