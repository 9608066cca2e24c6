"""This file's results: every object Dreamsmith made or changed keeps its prompt (or picture), preset, models and
seed as custom properties (``dreamsmith_*``; a script's own model and config overrides too). The History subpanel
lists them, newest first, with Recall (put the settings back in the sidebar), Re-roll (the same settings, a
script's overrides included, a new seed), Select, and Continue (edit it with the sidebar's prompt, from its saved
engine state when it has one)."""

import random

import bpy
from bpy.props import StringProperty

from .properties import MAX_SEED
from .scene_io import PROP_PREFIX

#: The sidebar inputs a result's properties give back, and the properties they come from.
RECALLED = {"prompt": "prompt", "negative_prompt": "negative_prompt", "preset": "preset", "seed": "seed",
            "elevation": "elevation", "fov": "fov"}


def results(data=None) -> list:
    """The objects of this file that Dreamsmith made or changed, newest first."""
    data = data or bpy.data
    found = [obj for obj in data.objects if PROP_PREFIX + "seed" in obj.keys()]
    return sorted(found, key=lambda obj: (str(obj.get(PROP_PREFIX + "time", "")), obj.name), reverse=True)


def describe(obj) -> tuple[str, str]:
    """Two lines for the list: what was asked ("'a red cube'" or "Picture: cat.png"), and how ("Standard, seed 7,
    2026-12-06 17:40")."""
    get = obj.get
    what = f"'{get(PROP_PREFIX + 'prompt')}'" if get(PROP_PREFIX + "prompt") else ""
    if get(PROP_PREFIX + "image"):
        what = (what + " from " if what else "Picture: ") + str(get(PROP_PREFIX + "image"))
    preset = str(get(PROP_PREFIX + "preset", "")).title()
    when = str(get(PROP_PREFIX + "time", ""))
    how = ", ".join(x for x in (preset, f"seed {get(PROP_PREFIX + 'seed')}", when) if x)
    return what or obj.name, how


def recall(obj, props) -> None:
    """Put ``obj``'s settings back into the sidebar's inputs ``props`` (``scene.dreamsmith``); a picture result sets
    the source to Picture with its file when that is in this file's images or on disk."""
    for key, name in RECALLED.items():
        value = obj.get(PROP_PREFIX + name)
        if value is not None:
            setattr(props, key, value)
    props.random_seed = False  # the recalled seed is meant: Re-roll draws a new one
    picture = obj.get(PROP_PREFIX + "image")
    if picture:
        props.source = "IMAGE"
        image = bpy.data.images.get(str(picture))
        if image is not None:
            props.image = image
    else:
        props.source = "TEXT"


class _OnResult:
    """An operator on one result, named by ``object_name``."""

    object_name: StringProperty(name="Object", default="", options={"SKIP_SAVE"})

    def result(self, context):
        obj = bpy.data.objects.get(self.object_name)
        if obj is None or PROP_PREFIX + "seed" not in obj.keys():
            self.report({"ERROR"}, f"{self.object_name!r} is not a Dreamsmith result in this file any more.")
            return None
        return obj


class DREAMSMITH_OT_recall(_OnResult, bpy.types.Operator):
    """Put this result's prompt, preset and seed back in the sidebar"""

    bl_idname = "dreamsmith.recall"
    bl_label = "Recall"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = self.result(context)
        if obj is None:
            return {"CANCELLED"}
        recall(obj, context.scene.dreamsmith)
        self.report({"INFO"}, f"Dreamsmith: the settings of {obj.name!r} are back in the sidebar.")
        return {"FINISHED"}


class DREAMSMITH_OT_reroll(_OnResult, bpy.types.Operator):
    """Generate again with this result's settings (or the sidebar's) and a new random seed"""

    bl_idname = "dreamsmith.reroll"
    bl_label = "Re-roll"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        """When Generate may run."""
        return bpy.ops.dreamsmith.generate.poll()

    def execute(self, context):
        props = context.scene.dreamsmith
        model = config = ""  # the operator's own defaults: the preference's model, no overrides
        if self.object_name:
            obj = self.result(context)
            if obj is None:
                return {"CANCELLED"}
            recall(obj, props)
            # A result a script made with its own model or config overrides is re-rolled with them too.
            model, config = str(obj.get(PROP_PREFIX + "model", "")), str(obj.get(PROP_PREFIX + "config", ""))
        props.seed = random.randint(0, MAX_SEED)
        return bpy.ops.dreamsmith.generate(seed=props.seed, variations=1, model=model, config_json=config)


class DREAMSMITH_OT_select_result(_OnResult, bpy.types.Operator):
    """Select this result and make it active"""

    bl_idname = "dreamsmith.select_result"
    bl_label = "Select"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = self.result(context)
        if obj is None:
            return {"CANCELLED"}
        if context.view_layer.objects.get(obj.name) is None:
            self.report({"ERROR"}, f"{obj.name!r} is not in this view layer.")
            return {"CANCELLED"}
        for other in context.view_layer.objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        return {"FINISHED"}


class DREAMSMITH_OT_continue(_OnResult, bpy.types.Operator):
    """Edit this result with the sidebar's prompt, from its saved engine state when it has one"""

    bl_idname = "dreamsmith.continue_result"
    bl_label = "Continue"
    bl_options = {"REGISTER"}

    def execute(self, context):
        obj = self.result(context)
        if obj is None:
            return {"CANCELLED"}
        if not context.scene.dreamsmith.prompt.strip():
            self.report({"ERROR"}, "Type in the sidebar's prompt what to change the object into, then Continue.")
            return {"CANCELLED"}
        if bpy.ops.dreamsmith.select_result(object_name=obj.name) != {"FINISHED"}:
            return {"CANCELLED"}
        return bpy.ops.dreamsmith.edit()


CLASSES = (DREAMSMITH_OT_recall, DREAMSMITH_OT_reroll, DREAMSMITH_OT_select_result, DREAMSMITH_OT_continue)
