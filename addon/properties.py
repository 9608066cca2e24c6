"""Scene properties: what to make (prompt, preset, seed) and the state of the running job, for the sidebar."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..protocol import PRESETS, PROGRESS

PRESET_ITEMS = PRESETS


class DreamsmithSceneProps(bpy.types.PropertyGroup):
    """``scene.dreamsmith``: the job's inputs, and its progress (written by the job timer)."""

    prompt: StringProperty(name="Prompt", default="", description="What to make, e.g. 'a red cube'")
    negative_prompt: StringProperty(name="Negative", default="", description="What to avoid, e.g. 'blurry'")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="draft", description="Quality preset")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same device: same result")

    running: BoolProperty(name="Running", default=False, description="A job is running")
    stage: StringProperty(name="Stage", default="")
    step: IntProperty(name="Step", default=0, min=0)
    total: IntProperty(name="Total", default=0, min=0)
    eta: FloatProperty(name="ETA", default=-1.0, description="Seconds left in this stage (-1: unknown)")
    message: StringProperty(name="Message", default="", description="The last job's outcome")
    message_is_error: BoolProperty(default=False)
    preview_image: StringProperty(name="Preview image", default="", description="Name of the live preview image")


def reset_progress(props) -> None:
    """Clear the progress fields (keeps the inputs and the preview)."""
    props.stage, props.step, props.total, props.eta = "", 0, 0, -1.0


def apply_message(props, msg: dict) -> None:
    """Copy a worker progress message into ``props``."""
    if msg.get("type") != PROGRESS:
        return
    props.stage = str(msg.get("stage", ""))
    props.step = max(0, int(msg.get("step") or 0))
    props.total = max(0, int(msg.get("total") or 0))
    eta = msg.get("eta")
    props.eta = -1.0 if eta is None else float(eta)
