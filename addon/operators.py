"""Operators: Generate (from a prompt, or from a picture: image to 3D), Re-texture and Edit (each runs the engine
in a worker process, see :mod:`.running`) and Cancel.

Interactive Blender: an operator starts the worker and returns at once; the running job's timer
(:func:`.running.job_timer`) drains progress into ``scene.dreamsmith``, redraws the sidebar, and on "done"
imports the result (then one undo step). ``blender --background``: Generate waits for the worker,
imports, and returns; a failure is reported as an ERROR, so ``bpy.ops.dreamsmith.generate(...)``
raises ``RuntimeError("Error: <what to do>")`` and the scene is unchanged.
"""

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .preferences import get_preferences
from .properties import PRESET_ITEMS, elevation_prop, fov_prop, job_props
from .running import (
    INPUTS,
    finish_job,
    handle_message,
    job_running,
    job_state,
    parse_config,
    print_stage,
    redraw,
    start_job,
    stop_job,
)


def _idle(cls) -> bool:
    """Whether a job may start: none is running and the engine is not being installed (else says why)."""
    from .deps import busy

    reason = busy()
    if reason:
        cls.poll_message_set(reason)
    return not reason


class _JobOperator:
    """What Generate, Re-texture and Edit share: inputs from the operator or the sidebar, one job at a time,
    interactive (timer) or blocking (``--background``). Subclasses set ``command`` and ``targets()``."""

    command = "generate"
    #: What to say when the prompt is empty (and there is no picture).
    empty_prompt = "The prompt is empty; describe the object to make, e.g. 'a red cube'."

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
        """One job at a time, and not while the engine is being installed."""
        return _idle(cls)

    def targets(self, context) -> list[str]:
        """Names of the objects to work on (raise ValueError with a message for the user)."""
        return []

    def picture(self, context) -> dict:
        """Image to 3D inputs (:func:`.image_source.picture_inputs`; ``{}``: none; raise ValueError with a message
        for the user)."""
        return {}

    def execute(self, context):
        """Start the job (interactive) or run it to the end (background)."""
        scene_props = context.scene.dreamsmith
        values = {name: getattr(self if self.properties.is_property_set(name) else scene_props, name)
                  for name in INPUTS}
        try:
            picture = self.picture(context)
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
        try:
            targets = self.targets(context)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        values = dict(values, prompt=prompt, **picture)
        kwargs = {"command": self.command, "as_new_object": getattr(self, "as_new_object", False)}
        if not bpy.app.background:
            try:
                start_job(context, values, self.model, config, interactive=True, targets=targets, **kwargs)
            except (OSError, ValueError) as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            what = prompt or os.path.basename(picture.get("image", "")) or picture.get("image_block", "")
            self.report({"INFO"}, f"Dreamsmith: {self.command} {what!r}...")
            return {"FINISHED"}
        messages = []
        for i in range(max(1, len(targets))):  # background: one blocking job per target
            try:
                start_job(context, values, self.model, config, interactive=False, targets=targets[i:i + 1], **kwargs)
            except (OSError, ValueError) as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            ok, message = self._wait(job_props(context))
            if not ok:
                self.report({"ERROR"}, message)
                return {"CANCELLED"}
            messages.append(message)
        self.report({"INFO"}, "Dreamsmith: " + " ".join(messages))
        return {"FINISHED"}

    def _wait(self, props) -> tuple[bool, str]:
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
    responsive)"""

    bl_idname = "dreamsmith.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}
    command = "generate"
    empty_prompt = ("The prompt is empty; describe the object to make, e.g. 'a red cube', or make it from a picture "
                    "(From image in the sidebar, or image_path=...).")

    image_path: StringProperty(name="Picture", default="", subtype="FILE_PATH", options={"SKIP_SAVE"},
                               description="Image to 3D: a PNG or JPEG to make the object from (the prompt is then "
                                           "optional); unset: the sidebar's source decides")
    elevation: elevation_prop(options={"SKIP_SAVE"})
    fov: fov_prop(options={"SKIP_SAVE"})

    def picture(self, context) -> dict:
        """The operator's picture, else the sidebar's when it is on "From image"; its camera from the operator when
        set, else from the sidebar."""
        from .image_source import picture_inputs

        props = context.scene.dreamsmith
        elevation, fov = (getattr(self if self.properties.is_property_set(name) else props, name)
                          for name in ("elevation", "fov"))
        return picture_inputs(self.image_path, props, elevation, fov)


class DREAMSMITH_OT_retexture(_JobOperator, bpy.types.Operator):
    """Paint a new texture on the selected meshes from the prompt; their geometry is kept and the old materials
    stay in the file"""

    bl_idname = "dreamsmith.retexture"
    bl_label = "Re-texture"
    bl_options = {"REGISTER"}
    command = "retexture"

    @classmethod
    def poll(cls, context):
        """One job at a time, not while installing, and a selected mesh to paint."""
        if not _idle(cls):
            return False
        if not any(obj.type == "MESH" for obj in (context.selected_objects or [])):
            cls.poll_message_set("Select the mesh objects to re-texture.")
            return False
        return True

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

    @classmethod
    def poll(cls, context):
        """One job at a time, not while installing, and an active mesh to edit."""
        if not _idle(cls):
            return False
        obj = context.view_layer.objects.active if context.view_layer else None
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Make a mesh object active to edit it.")
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
        redraw()
        self.report({"INFO"}, "Dreamsmith: cancelled; nothing was added to the scene.")
        return {"FINISHED"}
