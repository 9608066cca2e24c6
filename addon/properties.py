"""What to make (from text or from a picture; prompt, preset, seed: ``scene.dreamsmith``, saved with the scene) and
the state of the running job (``window_manager.dreamsmith_job``: one per Blender session, never saved in the .blend,
untouched by undo and the same from every scene)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..protocol import PRESETS, PROGRESS, job_progress, stage_label
from .image_source import ELEVATION_MAX, FOV_RANGE

PRESET_ITEMS = PRESETS
#: The sidebar's face budgets: (id, label, description); the id is the budget in triangles ("0": the full surface).
FACE_ITEMS = (("0", "Full", "The full surface the mesh stage made"),
              ("100000", "100k", "At most 100,000 triangles, with a normal map of the full surface"),
              ("20000", "20k", "At most 20,000 triangles, with a normal map of the full surface"),
              ("5000", "5k", "At most 5,000 triangles, with a normal map of the full surface"))
SOURCE_ITEMS = (("TEXT", "Text", "Make the object the prompt describes"),
                ("IMAGE", "Picture", "Make the object in a picture (the prompt is optional)"))
#: The largest seed a job takes (the engine's generators take 64-bit seeds; this keeps them readable).
MAX_SEED = 2**31 - 1


def elevation_prop(**options):
    """The picture's camera elevation (the scene's and the operator's)."""
    return FloatProperty(name="Elevation", default=0.0, min=-ELEVATION_MAX, max=ELEVATION_MAX, precision=1,
                         description="How far above the object the picture was taken, in degrees (0: level with "
                                     "it; negative: from below)", **options)


def fov_prop(**options):
    """The picture's field of view (the scene's and the operator's)."""
    return FloatProperty(name="Field of View", default=0.0, min=0.0, max=FOV_RANGE[1], precision=1,
                         description=f"The picture's vertical field of view in degrees; 0: the model's own, else "
                                     f"{FOV_RANGE[0]:g} to {FOV_RANGE[1]:g}", **options)


class DreamsmithSceneProps(bpy.types.PropertyGroup):
    """``scene.dreamsmith``: the job's inputs, saved with the scene."""

    prompt: StringProperty(name="Prompt", default="", description="What to make, e.g. 'a red cube'")
    negative_prompt: StringProperty(name="Negative Prompt", default="", description="What to avoid, e.g. 'blurry'")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="draft", description="Quality preset")
    seed: IntProperty(name="Seed", default=0, min=0, max=MAX_SEED,
                      description="Same seed, same settings, same device: same result")
    random_seed: BoolProperty(name="Random Seed", default=True,
                              description="Draw a new seed for each job (the seed used is kept on the result)")
    variations: IntProperty(name="Variations", default=1, min=1, max=16,
                            description="How many objects Generate makes, one after the other, each with its own "
                                        "seed")
    faces: EnumProperty(name="Faces", items=FACE_ITEMS, default="0",
                        description="The face budget of the mesh a job writes (decimated, with a normal map)")
    lods: IntProperty(name="Levels of Detail", default=1, min=1, max=4,
                      description="Levels of detail: LOD0 at the budget, each next a quarter of the faces, in one "
                                  "collection")
    source: EnumProperty(name="Source", items=SOURCE_ITEMS, default="TEXT", description="What Generate starts from")
    image: PointerProperty(name="Image", type=bpy.types.Image,
                           description="A picture in this file (used before the file below)")
    image_path: StringProperty(name="Picture File", default="", subtype="FILE_PATH",
                               description="A PNG (transparent background) or JPEG (plain background) on disk, used "
                                           "when no image is picked above")
    elevation: elevation_prop()
    fov: fov_prop()


class DreamsmithJobProps(bpy.types.PropertyGroup):
    """``window_manager.dreamsmith_job``: the running job's progress and the last job's outcome (written by the job
    timer; the window manager's properties are not saved in the .blend and undo does not touch them)."""

    running: BoolProperty(name="Running", default=False, description="A job is running")
    command: StringProperty(name="Command", default="", description="The running job's command")
    stage: StringProperty(name="Stage", default="")
    step: IntProperty(name="Step", default=0, min=0)
    total: IntProperty(name="Total", default=0, min=0)
    eta: FloatProperty(name="ETA", default=-1.0, description="Seconds left in this stage (-1: unknown)")
    stage_message: StringProperty(name="Stage Message", default="",
                                  description="What the stage is doing, when it says (e.g. waiting for a build)")
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, description="How far the whole job is")
    estimate: StringProperty(name="Estimate", default="", description="The engine's estimate (JSON) of the job")
    message: StringProperty(name="Message", default="", description="The last job's outcome")
    message_is_error: BoolProperty(default=False)
    preview_image: StringProperty(name="Preview Image", default="", description="Name of the live preview image")


def job_props(context=None):
    """The job's progress properties (None before registration or without a window manager)."""
    wm = (context or bpy.context).window_manager
    return getattr(wm, "dreamsmith_job", None) if wm is not None else None


def reset_progress(props) -> None:
    """Clear the progress fields (keeps the inputs and the preview)."""
    props.stage, props.step, props.total, props.eta, props.stage_message = "", 0, 0, -1.0, ""
    props.progress = 0.0


def apply_message(props, msg: dict) -> None:
    """Copy a worker progress message into ``props``: the stage, its step and ETA, and the whole job's progress."""
    if msg.get("type") != PROGRESS:
        return
    props.stage = str(msg.get("stage", ""))
    props.step = max(0, int(msg.get("step") or 0))
    props.total = max(0, int(msg.get("total") or 0))
    eta = msg.get("eta")
    props.eta = -1.0 if eta is None else float(eta)
    props.stage_message = str(msg.get("message") or "")
    import json

    seconds = (json.loads(props.estimate) if props.estimate else {}).get("stages")
    done = job_progress(props.command, props.stage, props.step, props.total, seconds)
    props.progress = max(props.progress, done)  # stages outside the plan (loading, estimating) keep it


def job_eta_seconds(progress: float, elapsed: float) -> float:
    """Seconds left in the whole job, from the time it has taken so far and how far it is (-1: not yet known)."""
    if progress < 0.02 or elapsed <= 0:
        return -1.0
    return elapsed / progress - elapsed


def progress_text(props, elapsed: float) -> str:
    """The job bar's text, ``elapsed`` seconds into the job: "Coarse Shape 120/400 - 2:05 left"."""
    label = stage_label(props.stage) if props.stage else "Starting"
    steps = f" {props.step}/{props.total}" if props.total > 0 else ""
    left = job_eta_seconds(props.progress, elapsed)
    if left < 0:
        return f"{label}{steps}"
    minutes, secs = divmod(int(round(left)), 60)
    return f"{label}{steps} - {minutes}:{secs:02d} left" if minutes else f"{label}{steps} - {secs} s left"
