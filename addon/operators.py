"""Operators: Generate (runs the engine in a worker process) and Cancel.

Interactive Blender: Generate starts the worker and returns at once; a ``bpy.app.timers`` callback
(:func:`job_timer`) drains progress into ``scene.dreamsmith``, redraws the sidebar, and on "done"
imports the result (then one undo step). ``blender --background``: Generate waits for the worker,
imports, and returns; a failure is reported as an ERROR, so ``bpy.ops.dreamsmith.generate(...)``
raises ``RuntimeError("Error: <what to do>")`` and the scene is unchanged.
"""

import json
import os
import sys

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .deps import engine_paths
from .job import Outcome, WorkerJob, build_job, make_work_dir
from .preferences import get_preferences, interpreter, online_access
from .properties import PRESET_ITEMS, apply_message, reset_progress

TIMER_INTERVAL = 0.2
PREVIEW_IMAGE = "Dreamsmith Preview"
INPUTS = ("prompt", "negative_prompt", "preset", "seed")
JOBS_FOLDER = "dreamsmith-jobs"


class _State:
    """The one job of this Blender session (module state: timers and panels have no operator instance)."""

    job: WorkerJob | None = None
    meta: dict | None = None


_state = _State()


def job_running() -> bool:
    """Whether a job is running (one at a time)."""
    return _state.job is not None


def current_job() -> WorkerJob | None:
    """The running job, if any."""
    return _state.job


def _scene_props():
    meta = _state.meta or {}
    scene = bpy.data.scenes.get(meta.get("scene", "")) or bpy.context.scene
    return getattr(scene, "dreamsmith", None) if scene is not None else None


def _jobs_base(prefs) -> str:
    if prefs.cache_dir:
        return os.path.join(bpy.path.abspath(prefs.cache_dir), JOBS_FOLDER)
    return bpy.app.tempdir or ""


def _window_override():
    """A context override with a window (timers run without one); empty in background mode."""
    wm = bpy.context.window_manager
    windows = list(wm.windows) if wm is not None else []
    return {"window": windows[0]} if windows and not bpy.app.background else {}


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _load_preview(path: str, props) -> None:
    """Show a preview PNG from the worker in the sidebar (a packed image, so the job folder can go)."""
    if not os.path.isfile(path):  # the worker keeps only its newest previews
        return
    old = bpy.data.images.get(PREVIEW_IMAGE)
    if old is not None:
        bpy.data.images.remove(old)
    img = bpy.data.images.load(path, check_existing=False)
    img.name = PREVIEW_IMAGE
    img.pack()
    img.preview_ensure()
    props.preview_image = img.name


def _remove_preview(props) -> None:
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is not None:
        bpy.data.images.remove(image)
    if props is not None:
        props.preview_image = ""


def _handle(msg: dict, props) -> None:
    if props is None:
        return
    apply_message(props, msg)
    if msg.get("type") == "preview" and (_state.meta or {}).get("interactive"):  # scripts get no preview images
        _load_preview(str(msg.get("path", "")), props)


def _import(outcome: Outcome, meta: dict):
    from .scene_io import import_result

    cfg = (outcome.summary or {}).get("config") or {}
    coarse = (cfg.get("coarse_model") or {}).get("model", meta["model"])
    fine = (cfg.get("fine_model") or {}).get("model") or coarse
    props = dict(meta["props"], coarse_model=coarse, fine_model=fine)
    return import_result(outcome.out, name=meta["name"], props=props)


def _finish(outcome: Outcome | None, undo: bool) -> tuple[bool, str]:
    """End the current job: import its result if it succeeded, clean up, update the sidebar.

    Returns:
        Whether an object was added, and the message for the user.
    """
    job, meta, props = _state.job, _state.meta, _scene_props()
    _state.job = _state.meta = None
    ok, message = False, "The job ended without a result."
    try:
        if outcome is not None and outcome.ok:
            with bpy.context.temp_override(**_window_override()):
                try:
                    obj = _import(outcome, meta)
                except RuntimeError as exc:
                    message = f"Importing the result failed: {exc}"
                else:
                    ok, message = True, f"Added {obj.name!r}."
                    if undo:
                        bpy.ops.ed.undo_push(message="Dreamsmith generate")
        elif outcome is not None:
            message = outcome.message
        if not ok and meta is not None and not meta.get("had_preview"):
            _remove_preview(props)  # a failed or cancelled job leaves the data-blocks as they were
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
    """Tell the user about a job that ended while no operator was running (timer)."""
    print(f"Dreamsmith: {message}", file=sys.stderr if error else sys.stdout)
    override = _window_override()
    if not error or not override:
        return

    def draw(menu, _context):
        menu.layout.label(text=message)

    with bpy.context.temp_override(**override):
        bpy.context.window_manager.popup_menu(draw, title="Dreamsmith", icon="ERROR")


def job_timer() -> float | None:
    """``bpy.app.timers`` callback: drain progress, and finish the job when it has ended."""
    job = _state.job
    if job is None:
        return None
    props = _scene_props()
    try:
        for msg in job.poll():
            _handle(msg, props)
        _redraw()
        if job.outcome is None:
            return TIMER_INTERVAL
        ok, message = _finish(job.outcome, undo=True)
    except BaseException:  # Blender drops a timer that raises: never leave an orphan job behind it
        _cancel_current()
        raise
    _redraw()
    _notify(message, error=not ok and job.outcome.kind != "Cancelled")
    return None


def _cancel_current() -> None:
    job = _state.job
    if job is not None:
        job.cancel()
        _finish(job.outcome, undo=False)


def stop_job() -> None:
    """Cancel the running job (if any), remove the timer, clean up; the scene is left as it was."""
    if bpy.app.timers.is_registered(job_timer):
        bpy.app.timers.unregister(job_timer)
    _cancel_current()


def _parse_config(text: str) -> dict:
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("it must be a JSON object")
    return data


def start_job(context, values: dict, model: str, config: dict, interactive: bool) -> WorkerJob:
    """Start the worker for ``values`` (prompt, negative_prompt, preset, seed) and make it the current job.

    Interactive: previews are requested and :func:`job_timer` is registered to drive the job. Raises OSError
    (with a message for the user) when the interpreter cannot be started; nothing is left behind then.
    """
    prefs = get_preferences(context)
    model = model or prefs.coarse_model
    cache_dir = bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else ""
    try:
        work_dir = make_work_dir(_jobs_base(prefs))
    except OSError as exc:
        raise OSError(f"Cannot create a job folder under {_jobs_base(prefs)!r} ({exc}); choose a writable cache "
                      "folder in the add-on preferences.") from exc
    job = WorkerJob(build_job(
        values["prompt"], work_dir / "result.glb", negative_prompt=values["negative_prompt"], preset=values["preset"],
        seed=values["seed"], model=model, fine_model=prefs.fine_model, device=prefs.device,
        preview=work_dir / "preview.png" if interactive else None, config=config,
        allow_network=online_access(prefs), cache_dir=cache_dir),
        interpreter(prefs), work_dir, python_paths=engine_paths(prefs))
    try:
        job.start()
    except OSError as exc:
        job.cleanup()
        raise OSError(f"Cannot start the engine with {job.python!r} ({exc}); set the Python path in the add-on "
                      "preferences and use Check setup.") from exc
    _state.job = job
    _state.meta = {"name": values["prompt"][:60], "scene": context.scene.name, "model": model,
                   "interactive": interactive, "had_preview": PREVIEW_IMAGE in bpy.data.images,
                   "props": {"prompt": values["prompt"], "negative_prompt": values["negative_prompt"],
                             "seed": int(values["seed"]), "preset": values["preset"]}}
    props = context.scene.dreamsmith
    props.running, props.message, props.message_is_error = True, "", False
    reset_progress(props)
    if interactive:
        bpy.app.timers.register(job_timer, first_interval=TIMER_INTERVAL)
    return job


class DREAMSMITH_OT_generate(bpy.types.Operator):
    """Make a textured mesh from the prompt (the engine runs in a separate process; Blender stays responsive)"""

    bl_idname = "dreamsmith.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    prompt: StringProperty(name="Prompt", default="", options={"SKIP_SAVE"},
                           description="What to make; unset: the sidebar's prompt")
    negative_prompt: StringProperty(name="Negative prompt", default="", options={"SKIP_SAVE"},
                                    description="What to avoid; unset: the sidebar's")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="draft", options={"SKIP_SAVE"},
                         description="Quality preset; unset: the sidebar's")
    seed: IntProperty(name="Seed", default=0, min=0, options={"SKIP_SAVE"}, description="Seed; unset: the sidebar's")
    model: StringProperty(name="Model", default="", options={"SKIP_SAVE"},
                          description="Coarse-stage prior (Hugging Face id or diffusers folder); empty: the preference")
    config_json: StringProperty(name="Config overrides", default="", options={"HIDDEN", "SKIP_SAVE"},
                                description="JSON object of engine config overrides (for scripts and tests)")

    @classmethod
    def poll(cls, context):
        """One job at a time."""
        return not job_running()

    def execute(self, context):
        """Start the job (interactive) or run it to the end (background)."""
        scene_props = context.scene.dreamsmith
        values = {name: getattr(self if self.properties.is_property_set(name) else scene_props, name)
                  for name in INPUTS}
        prompt = values["prompt"].strip()
        if not prompt:
            self.report({"ERROR"}, "The prompt is empty; describe the object to make, e.g. 'a red cube'.")
            return {"CANCELLED"}
        try:
            config = _parse_config(self.config_json)
        except ValueError as exc:
            self.report({"ERROR"}, f"The config overrides are not a JSON object ({exc}).")
            return {"CANCELLED"}
        try:
            start_job(context, dict(values, prompt=prompt), self.model, config, interactive=not bpy.app.background)
        except OSError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.app.background:
            return self._wait(scene_props)
        self.report({"INFO"}, f"Dreamsmith: generating {prompt!r}...")
        return {"FINISHED"}

    def _wait(self, scene_props):
        job = _state.job
        try:
            outcome = job.wait(on_message=lambda msg: _handle(msg, scene_props))
        except BaseException:  # e.g. KeyboardInterrupt in a script: end the worker, then let it through
            stop_job()
            raise
        ok, message = _finish(outcome, undo=False)
        if not ok:
            self.report({"ERROR"}, message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Dreamsmith: {message}")
        return {"FINISHED"}


class DREAMSMITH_OT_cancel(bpy.types.Operator):
    """Stop the running Dreamsmith job; nothing is added to the scene"""

    bl_idname = "dreamsmith.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        """Only while a job runs."""
        return job_running()

    def execute(self, context):
        """Stop the worker (SIGTERM, then kill) and clean up."""
        stop_job()
        _redraw()
        self.report({"INFO"}, "Dreamsmith: cancelled; nothing was added to the scene.")
        return {"FINISHED"}
