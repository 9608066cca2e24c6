"""Operators: Generate (from a prompt, or from a picture: image to 3D), Re-texture and Edit (each runs the engine
in a worker process, see :mod:`.running`) and Cancel.

Interactive Blender: an operator starts the worker and returns at once; the running job's timer
(:func:`.running.job_timer`) drains progress into ``scene.dreamsmith``, redraws the sidebar, and on "done"
imports the result (then one undo step). ``blender --background``: Generate waits for the worker,
imports, and returns; a failure is reported as an ERROR, so ``bpy.ops.dreamsmith.generate(...)``
raises ``RuntimeError("Error: <what to do>")`` and the scene is unchanged.
"""

import random

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .properties import MAX_SEED, PRESET_ITEMS, elevation_prop, fov_prop, job_props
from .running import (
    INPUTS,
    Pending,
    Request,
    finish_job,
    handle_message,
    job_running,
    job_state,
    parse_config,
    print_stage,
    redraw,
    start_job,
    stop_job,
    submit,
)
from .settings import get_preferences


def _can_start(cls) -> bool:
    """Whether a job may start or be queued: the engine can run and is not being installed (else says why, and the
    button is greyed with that reason)."""
    from .engine_status import status

    reason = status(get_preferences()).reason
    if reason:
        cls.poll_message_set(reason)
    return not reason


def _seeds(op, scene_props, n: int) -> list[int]:
    """The seeds of ``n`` jobs: the operator's seed and the next ones when a script sets it; else new random seeds
    (the sidebar's Random Seed, on by default) or the sidebar's seed and the next ones. The sidebar then shows the
    first seed used."""
    if op.properties.is_property_set("seed"):
        return [(op.seed + k) % (MAX_SEED + 1) for k in range(n)]
    if scene_props.random_seed:
        seeds = [random.randint(0, MAX_SEED) for _ in range(n)]
        scene_props.seed = seeds[0]
        return seeds
    return [(scene_props.seed + k) % (MAX_SEED + 1) for k in range(n)]


class _JobOperator:
    """What Generate, Re-texture and Edit with Prompt share: inputs from the operator or the sidebar, a queue of
    jobs (interactive: they run one after the other while Blender stays responsive) or one blocking job after the
    other (``--background``). Subclasses set ``command`` and ``targets()``."""

    command = "generate"
    #: What to say when the prompt is empty (and there is no picture).
    empty_prompt = "The prompt is empty: describe the object to make, e.g. 'a red cube'."

    prompt: StringProperty(name="Prompt", default="", options={"SKIP_SAVE"},
                           description="What to make; unset: the sidebar's prompt")
    negative_prompt: StringProperty(name="Negative Prompt", default="", options={"SKIP_SAVE"},
                                    description="What to avoid; unset: the sidebar's")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="draft", options={"SKIP_SAVE"},
                         description="Quality preset; unset: the sidebar's")
    seed: IntProperty(name="Seed", default=0, min=0, max=MAX_SEED, options={"SKIP_SAVE"},
                      description="Seed; unset: the sidebar's (or a random one, with Random Seed)")
    model: StringProperty(name="Model", default="", options={"SKIP_SAVE"},
                          description="Prior (Hugging Face id or diffusers folder); empty: the preference")
    config_json: StringProperty(name="Config Overrides", default="", options={"HIDDEN", "SKIP_SAVE"},
                                description="JSON object of engine config overrides (for scripts and tests)")

    @classmethod
    def poll(cls, context):
        """The engine can run and is not being installed (a running job does not stop it: the job is queued)."""
        return _can_start(cls)

    def targets(self, context) -> list[str]:
        """Names of the objects to work on (raise ValueError with a message for the user)."""
        return []

    def picture(self, context) -> dict:
        """Image to 3D inputs (:func:`.image_source.picture_inputs`; ``{}``: none; raise ValueError with a message
        for the user)."""
        return {}

    def count(self, context) -> int:
        """How many jobs of each target (Generate: the sidebar's Variations)."""
        return 1

    def execute(self, context):
        """Queue the jobs and start the first (interactive), or run them one by one to the end (background)."""
        scene_props = context.scene.dreamsmith
        values = {name: getattr(self if self.properties.is_property_set(name) else scene_props, name)
                  for name in INPUTS if name != "seed"}
        try:
            picture = self.picture(context)
            targets = self.targets(context)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        prompt = values["prompt"].strip()
        if not prompt and not picture:
            self.report({"ERROR"}, self.empty_prompt)
            return {"CANCELLED"}
        try:
            config = parse_config(self.config_json)
        except ValueError as exc:
            self.report({"ERROR"}, f"The config overrides are not a JSON object ({exc}).")
            return {"CANCELLED"}
        if self.command in ("generate", "edit") and (scene_props.faces != "0" or scene_props.lods > 1):
            bake = {"faces": int(scene_props.faces), "lods": scene_props.lods, **config.get("bake", {})}
            config = dict(config, bake=bake)  # the sidebar's face budget; a script's overrides win
        n = self.count(context)
        seeds = _seeds(self, scene_props, n * max(1, len(targets)))
        jobs = [Pending(Request(dict(values, prompt=prompt, seed=seeds[k * n + i], **picture), self.model, config,
                                self.command), target, getattr(self, "as_new_object", False))
                for k, target in enumerate(targets or [""]) for i in range(n)]
        return dispatch(self, context, jobs)


def dispatch(op, context, jobs: list[Pending]) -> set[str]:
    """Run ``jobs`` for the operator ``op``: queued (interactive Blender: the first starts at once, Blender stays
    responsive) or one blocking job after the other (``--background``: an error is raised by the operator)."""
    if not bpy.app.background:
        try:
            waiting = submit(context, jobs)
        except (OSError, ValueError) as exc:
            op.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        queued = f" ({len(jobs)} jobs)" if len(jobs) > 1 else ""
        when = f"; {waiting} waiting in the queue" if job_running() and waiting else ""
        op.report({"INFO"}, f"Dreamsmith: {jobs[0].label}{queued}{when}.")
        return {"FINISHED"}
    messages = []
    for item in jobs:  # background: one blocking job after the other
        r = item.request
        try:
            start_job(context, r.values, r.model, r.config, interactive=False, command=r.command,
                      targets=[item.target] if item.target else None, as_new_object=item.as_new_object)
        except (OSError, ValueError) as exc:
            op.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        ok, message = _wait(job_props(context))
        if not ok:
            op.report({"ERROR"}, message)
            return {"CANCELLED"}
        messages.append(message)
    op.report({"INFO"}, "Dreamsmith: " + " ".join(messages))
    return {"FINISHED"}


def _wait(props) -> tuple[bool, str]:
    """Wait for the running job (``--background``), printing a line a stage; then finish it."""
    job = job_state.job
    try:
        limit = float(getattr(get_preferences(), "time_limit_min", 0.0)) * 60.0
        seen: set = set()

        def on_message(msg: dict) -> None:
            handle_message(msg, props)
            print_stage(msg, seen)

        outcome = job.wait(on_message=on_message, time_limit=limit)
    except BaseException:  # e.g. KeyboardInterrupt in a script: end the worker, then let it through
        stop_job()
        raise
    return finish_job(outcome, undo=False)


class DREAMSMITH_OT_generate(_JobOperator, bpy.types.Operator):
    """Make a textured mesh from the prompt or from a picture (the engine runs in a separate process; Blender stays
    responsive; with a job running, this one waits in the queue)"""

    bl_idname = "dreamsmith.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}
    command = "generate"
    empty_prompt = ("The prompt is empty: describe the object to make (e.g. 'a red cube'), or set Source to Picture "
                    "and choose one.")

    image_path: StringProperty(name="Picture", default="", subtype="FILE_PATH", options={"SKIP_SAVE"},
                               description="Image to 3D: a PNG or JPEG to make the object from (the prompt is then "
                                           "optional); unset: the sidebar's source decides")
    elevation: elevation_prop(options={"SKIP_SAVE"})
    fov: fov_prop(options={"SKIP_SAVE"})
    variations: IntProperty(name="Variations", default=1, min=1, max=16, options={"SKIP_SAVE"},
                            description="How many objects to make, each with its own seed; unset: the sidebar's")

    def picture(self, context) -> dict:
        """The operator's picture, else the sidebar's when its Source is Picture; its camera from the operator when
        set, else from the sidebar."""
        from .image_source import picture_inputs

        props = context.scene.dreamsmith
        elevation, fov = (getattr(self if self.properties.is_property_set(name) else props, name)
                          for name in ("elevation", "fov"))
        return picture_inputs(self.image_path, props, elevation, fov)

    def count(self, context) -> int:
        """The operator's Variations when a script sets them, else the sidebar's."""
        if self.properties.is_property_set("variations"):
            return self.variations
        return context.scene.dreamsmith.variations


def _meshes_to_paint(context) -> list:
    """The selected mesh objects (lamps, cameras and other objects in the selection are left alone)."""
    return [obj for obj in (context.selected_objects or []) if obj.type == "MESH"]


class DREAMSMITH_OT_retexture(_JobOperator, bpy.types.Operator):
    """Paint a new texture on each selected mesh from the prompt, one after the other; their geometry is kept and
    the old materials stay in the file"""

    bl_idname = "dreamsmith.retexture"
    bl_label = "Re-texture"
    bl_options = {"REGISTER"}
    command = "retexture"

    @classmethod
    def poll(cls, context):
        """The engine can run, and a mesh with faces is selected (other selected objects are left alone)."""
        if not _can_start(cls):
            return False
        meshes = _meshes_to_paint(context)
        if not meshes:
            cls.poll_message_set("Select the mesh objects to re-texture.")
            return False
        if not any(len(obj.data.polygons) for obj in meshes):
            cls.poll_message_set("The selected meshes have no faces; select meshes with faces to re-texture.")
            return False
        return True

    def targets(self, context) -> list[str]:
        """The selected meshes; one without faces is refused with its name."""
        from .mesh_io import check_target

        meshes = _meshes_to_paint(context)
        if not meshes:
            raise ValueError("No mesh is selected; select the mesh objects to re-texture.")
        for obj in meshes:
            problem = check_target(obj)
            if problem:
                raise ValueError(problem)
        return [obj.name for obj in meshes]


class DREAMSMITH_OT_edit(_JobOperator, bpy.types.Operator):
    """Change the active object's shape and texture towards the prompt (from its saved state when Dreamsmith made
    it); its old mesh stays in the file"""

    bl_idname = "dreamsmith.edit"
    bl_label = "Edit with Prompt"
    bl_options = {"REGISTER"}
    command = "edit"

    as_new_object: BoolProperty(name="As New Object", default=False, options={"SKIP_SAVE"},
                                description="Add the result as a new object instead of replacing the mesh")

    @classmethod
    def poll(cls, context):
        """The engine can run, and the active object is a mesh with faces."""
        if not _can_start(cls):
            return False
        obj = context.view_layer.objects.active if context.view_layer else None
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Make a mesh object active to edit it with the prompt.")
            return False
        if not len(obj.data.polygons):
            cls.poll_message_set(f"The active mesh {obj.name!r} has no faces; make a mesh with faces active.")
            return False
        return True

    def targets(self, context) -> list[str]:
        """The active object, a mesh with faces."""
        from .mesh_io import check_target

        obj = context.view_layer.objects.active if context.view_layer else None
        problem = check_target(obj)
        if problem:
            raise ValueError(problem)
        return [obj.name]


class DREAMSMITH_OT_cancel(bpy.types.Operator):
    """Stop the running Dreamsmith job (nothing is added to the scene); the next queued job starts"""

    bl_idname = "dreamsmith.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    all: BoolProperty(name="All", default=False, options={"SKIP_SAVE"},
                      description="Also drop every job waiting in the queue")

    @classmethod
    def poll(cls, context):
        """Only while a job runs."""
        return job_running()

    def execute(self, context):
        """Stop the worker (SIGTERM, then kill) and clean up; with ``all``, empty the queue first."""
        from .running import clear_queue

        dropped = clear_queue() if self.all else 0
        if self.all:
            stop_job()
        else:
            cancel_and_continue(context)
        redraw()
        more = f" and {dropped} waiting" if dropped else ""
        self.report({"INFO"}, f"Dreamsmith: cancelled the running job{more}; nothing was added to the scene.")
        return {"FINISHED"}


def cancel_and_continue(context) -> None:
    """Cancel the running job and start the next queued one (the timer would, a tick later); with none waiting,
    the job timer goes too."""
    from .running import cancel_current, job_timer, start_next

    cancel_current()
    if not start_next(context) and bpy.app.timers.is_registered(job_timer):
        bpy.app.timers.unregister(job_timer)


class DREAMSMITH_OT_remove_queued(bpy.types.Operator):
    """Take this job out of the queue (it has not started)"""

    bl_idname = "dreamsmith.remove_queued"
    bl_label = "Remove From Queue"
    bl_options = {"REGISTER", "INTERNAL"}

    index: IntProperty(name="Index", default=0, min=0)

    def execute(self, context):
        """Drop the queued job at ``index``."""
        from .running import remove_queued

        try:
            remove_queued(self.index)
        except IndexError:
            self.report({"WARNING"}, "That job is no longer waiting.")
            return {"CANCELLED"}
        redraw()
        return {"FINISHED"}


class DREAMSMITH_OT_report(bpy.types.Operator):
    """Show a Dreamsmith message in the status bar (how a job that ends while no operator runs reports)"""

    bl_idname = "dreamsmith.report"
    bl_label = "Dreamsmith Message"
    bl_options = {"INTERNAL"}

    message: StringProperty(default="", options={"SKIP_SAVE"})
    error: BoolProperty(default=False, options={"SKIP_SAVE"})

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        """Report the message."""
        self.report({"ERROR"} if self.error else {"INFO"}, f"Dreamsmith: {self.message}")
        return {"FINISHED"}
