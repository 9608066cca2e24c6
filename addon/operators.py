"""Operators: Generate (runs the engine in a worker process) and Cancel.

Interactive Blender: Generate starts the worker and returns at once; a ``bpy.app.timers`` callback
(:func:`job_timer`) drains progress into ``scene.dreamsmith``, redraws the sidebar, and on "done"
imports the result (then one undo step). ``blender --background``: Generate waits for the worker,
imports, and returns; a failure is reported as an ERROR, so ``bpy.ops.dreamsmith.generate(...)``
raises ``RuntimeError("Error: <what to do>")`` and the scene is unchanged.
"""

import json
import os
import shutil
import sys

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..protocol import PREVIEW, result_models
from .deps import engine_paths, states_dir
from .job import Outcome, WorkerJob, build_job, make_work_dir
from .preferences import get_preferences, interpreter, online_access
from .properties import PRESET_ITEMS, apply_message, reset_progress
from .scene_io import PROP_PREFIX

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
    # The worker keeps only its newest previews, so the file may go at any moment, even between the load and the
    # pack: then this preview is skipped (the next one is on its way) and the one shown stays.
    try:
        img = bpy.data.images.load(path, check_existing=False)
    except RuntimeError:
        return
    try:
        img.pack()
    except RuntimeError:
        bpy.data.images.remove(img)
        return
    old = bpy.data.images.get(PREVIEW_IMAGE)
    if old is not None:
        bpy.data.images.remove(old)
    img.name = PREVIEW_IMAGE
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
    if msg.get("type") == PREVIEW and (_state.meta or {}).get("interactive"):  # scripts get no preview images
        _load_preview(str(msg.get("path", "")), props)


def _import(outcome: Outcome, meta: dict) -> tuple[object, str]:
    """Bring a finished job's result into the scene; returns the object and what was done to it."""
    from .mesh_io import apply_edit, apply_retexture
    from .scene_io import import_result

    summary = outcome.summary or {}
    models = result_models(summary)
    command = meta.get("command", "generate")
    if command == "generate":
        coarse = models.get("coarse") or meta["model"]
        props = dict(meta["props"], coarse_model=coarse, fine_model=models.get("fine") or coarse,
                     state=summary.get("state") or "")
        return import_result(outcome.out, name=meta["name"], props=props), "Added"
    target = bpy.data.objects.get(meta["target"])
    if target is None:
        raise RuntimeError(f"The object {meta['target']!r} was deleted while the job ran; nothing was changed.")
    props = dict(meta["props"], model=models.get("fine") or meta["model"])
    if command == "retexture":
        apply_retexture(target, outcome.out, meta["info"], bool(summary.get("uvs_kept")), props)
        return target, "Re-textured"
    return apply_edit(target, outcome.out, props, as_new_object=meta.get("as_new_object", False)), "Edited"


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
                    obj, done = _import(outcome, meta)
                except RuntimeError as exc:
                    message = f"Importing the result failed: {exc}"
                else:
                    ok, message = True, f"{done} {obj.name!r}."
                    if undo:
                        bpy.ops.ed.undo_push(message=f"Dreamsmith {meta.get('command', 'generate')}")
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
        queue = list((_state.meta or {}).get("queue", []))
        request = (_state.meta or {}).get("request")
        ok, message = _finish(job.outcome, undo=True)
        if queue and ok:  # re-texture several objects: one job after the other (a failure stops the rest)
            try:
                start_job(bpy.context, request["values"], request["model"], request["config"], interactive=True,
                          command=request["command"], targets=queue)
                return TIMER_INTERVAL
            except (OSError, ValueError) as exc:
                ok, message = False, str(exc)
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


def start_job(context, values: dict, model: str, config: dict, interactive: bool, command: str = "generate",
              targets: list[str] | None = None, as_new_object: bool = False) -> WorkerJob:
    """Start the worker for ``values`` (prompt, negative_prompt, preset, seed) and make it the current job.

    ``retexture`` and ``edit`` work on the first of ``targets`` (object names); the rest wait in a queue that
    :func:`job_timer` works through. Interactive: previews are requested and :func:`job_timer` is registered
    to drive the job. Raises OSError (interpreter or folder) or ValueError (object) with a message for the
    user; nothing is left behind then.
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
    request = {"values": values, "model": model, "config": dict(config), "command": command}
    info, mesh_path, config = None, None, dict(config)
    if command != "generate":
        from .mesh_io import export_for_engine

        mesh_path = work_dir / "input.obj"
        try:
            info = export_for_engine(bpy.data.objects[target], str(mesh_path))
        except (ValueError, OSError) as exc:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise ValueError(str(exc)) from exc
        if command == "retexture" and not info.same_topology:
            config["allow_new_uvs"] = False  # new UVs could not be put on the base mesh
    out = work_dir / ("result.obj" if command == "retexture" else "result.glb")
    state, state_out, world = "", "", None
    if command == "generate":
        state_out = str(states_dir(prefs) / f"{work_dir.name.removeprefix('dreamsmith-job-')}.safetensors")
    elif command == "edit":
        saved = str(bpy.data.objects[target].get(PROP_PREFIX + "state", ""))
        if saved and os.path.isfile(saved):  # generated here and still on disk: fine-tune that state
            state = saved
            world = [v for row in bpy.data.objects[target].matrix_world for v in row]
    job = WorkerJob(build_job(
        values["prompt"], out, negative_prompt=values["negative_prompt"], preset=values["preset"],
        seed=values["seed"], model=model, fine_model=prefs.fine_model if command in ("generate", "edit") else "",
        device=prefs.device, preview=work_dir / "preview.png" if interactive else None, config=config,
        allow_network=online_access(prefs), cache_dir=cache_dir, command=command, mesh=mesh_path, state=state,
        state_out=state_out, world=world),
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
                   "command": command, "target": target, "info": info, "as_new_object": as_new_object,
                   "queue": list(targets[1:]) if targets else [],
                   "request": request,
                   "props": {"prompt": values["prompt"], "negative_prompt": values["negative_prompt"],
                             "seed": int(values["seed"]), "preset": values["preset"]}}
    props = context.scene.dreamsmith
    props.running, props.message, props.message_is_error = True, "", False
    reset_progress(props)
    if interactive and not bpy.app.timers.is_registered(job_timer):
        bpy.app.timers.register(job_timer, first_interval=TIMER_INTERVAL)
    return job


class _JobOperator:
    """What Generate, Re-texture and Edit share: inputs from the operator or the sidebar, one job at a time,
    interactive (timer) or blocking (``--background``). Subclasses set ``command`` and ``targets()``."""

    command = "generate"

    prompt: StringProperty(name="Prompt", default="", options={"SKIP_SAVE"},
                           description="What to make; unset: the sidebar's prompt")
    negative_prompt: StringProperty(name="Negative prompt", default="", options={"SKIP_SAVE"},
                                    description="What to avoid; unset: the sidebar's")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="draft", options={"SKIP_SAVE"},
                         description="Quality preset; unset: the sidebar's")
    seed: IntProperty(name="Seed", default=0, min=0, options={"SKIP_SAVE"}, description="Seed; unset: the sidebar's")
    model: StringProperty(name="Model", default="", options={"SKIP_SAVE"},
                          description="Prior (Hugging Face id or diffusers folder); empty: the preference")
    config_json: StringProperty(name="Config overrides", default="", options={"HIDDEN", "SKIP_SAVE"},
                                description="JSON object of engine config overrides (for scripts and tests)")

    @classmethod
    def poll(cls, context):
        """One job at a time."""
        return not job_running()

    def targets(self, context) -> list[str]:
        """Names of the objects to work on (raise ValueError with a message for the user)."""
        return []

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
            targets = self.targets(context)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        values = dict(values, prompt=prompt)
        kwargs = {"command": self.command, "as_new_object": getattr(self, "as_new_object", False)}
        if not bpy.app.background:
            try:
                start_job(context, values, self.model, config, interactive=True, targets=targets, **kwargs)
            except (OSError, ValueError) as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            self.report({"INFO"}, f"Dreamsmith: {self.command} {prompt!r}...")
            return {"FINISHED"}
        messages = []
        for i in range(max(1, len(targets))):  # background: one blocking job per target
            try:
                start_job(context, values, self.model, config, interactive=False, targets=targets[i:i + 1], **kwargs)
            except (OSError, ValueError) as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            ok, message = self._wait(scene_props)
            if not ok:
                self.report({"ERROR"}, message)
                return {"CANCELLED"}
            messages.append(message)
        self.report({"INFO"}, "Dreamsmith: " + " ".join(messages))
        return {"FINISHED"}

    def _wait(self, scene_props) -> tuple[bool, str]:
        job = _state.job
        try:
            outcome = job.wait(on_message=lambda msg: _handle(msg, scene_props))
        except BaseException:  # e.g. KeyboardInterrupt in a script: end the worker, then let it through
            stop_job()
            raise
        return _finish(outcome, undo=False)


class DREAMSMITH_OT_generate(_JobOperator, bpy.types.Operator):
    """Make a textured mesh from the prompt (the engine runs in a separate process; Blender stays responsive)"""

    bl_idname = "dreamsmith.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}
    command = "generate"


class DREAMSMITH_OT_retexture(_JobOperator, bpy.types.Operator):
    """Paint a new texture on the selected meshes from the prompt; their geometry is kept and the old materials
    stay in the file"""

    bl_idname = "dreamsmith.retexture"
    bl_label = "Re-texture"
    bl_options = {"REGISTER"}
    command = "retexture"

    def targets(self, context) -> list[str]:
        """The selected objects, all meshes with faces."""
        from .mesh_io import check_target

        selected = list(context.selected_objects or [])
        if not selected:
            raise ValueError("Nothing is selected; select the mesh objects to re-texture.")
        for obj in selected:
            problem = check_target(obj)
            if problem:
                raise ValueError(problem)
        return [obj.name for obj in selected]


class DREAMSMITH_OT_edit(_JobOperator, bpy.types.Operator):
    """Change the active object's shape and texture towards the prompt; its old mesh stays in the file"""

    bl_idname = "dreamsmith.edit"
    bl_label = "Edit"
    bl_options = {"REGISTER"}
    command = "edit"

    as_new_object: BoolProperty(name="As new object", default=False, options={"SKIP_SAVE"},
                                description="Add the result as a new object instead of replacing the mesh")

    def targets(self, context) -> list[str]:
        """The active object, a mesh with faces."""
        from .mesh_io import check_target

        obj = context.view_layer.objects.active if context.view_layer else None
        problem = check_target(obj)
        if problem:
            raise ValueError(problem)
        return [obj.name]


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
