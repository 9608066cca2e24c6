"""The 3D View sidebar (tab "Dreamsmith") and the menu entries.

The main panel's first line says whether the engine can run a job (Ready: CUDA / CPU, Engine Not Installed with
Install Engine, Installing with progress and Cancel). Its subpanels: Input (source, prompt, quality, seed),
Picture (for a picture source), Models (closed by default), Job (the cost of the next job, Generate / Re-texture /
Edit with Prompt, the running job's progress and the queue) and History (this file's results). The operators are
also in Add > Mesh and in the Object menu, so F3 search finds them.
"""

import textwrap
import time

import bpy

from ..protocol import DEMO_MODEL, job_models, model_info, model_on_disk
from .operators import (
    DREAMSMITH_OT_cancel,
    DREAMSMITH_OT_edit,
    DREAMSMITH_OT_generate,
    DREAMSMITH_OT_remove_queued,
    DREAMSMITH_OT_retexture,
)
from .properties import job_props, progress_text
from .running import job_running, job_state
from .settings import get_preferences, online_access, online_hint

#: Pixels a character of the sidebar's font takes, about (to wrap long lines to the region's width).
CHAR_PX = 7.0


def wrapped(layout, text: str, icon: str = "NONE", width: int = 0) -> None:
    """``text`` as labels no wider than the region (``width`` pixels; 0: 300), the icon on the first line only."""
    chars = max(20, int((width or 300) / CHAR_PX))
    for i, line in enumerate(textwrap.wrap(text, chars) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _width(context) -> int:
    region = getattr(context, "region", None)
    return int(getattr(region, "width", 0) or 0)


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Dreamsmith"

    @classmethod
    def poll(cls, context):
        """Shown whenever the scene has the add-on's properties."""
        return context.scene is not None and hasattr(context.scene, "dreamsmith")


class DREAMSMITH_PT_main(_Sidebar, bpy.types.Panel):
    """Dreamsmith: is the engine ready to run a job?"""

    bl_idname = "DREAMSMITH_PT_main"
    bl_label = "Dreamsmith"

    def draw(self, context):
        """One line: Ready (with the device), Checking, Installing (progress, Cancel), or Not Installed (Install)."""
        from .deps import DREAMSMITH_OT_cancel_install, DREAMSMITH_OT_install_dependencies, install_progress
        from .engine_status import status

        layout = self.layout
        st = status(get_preferences())
        if st.state == "ready":
            layout.label(text=st.text, icon="CHECKMARK")
        elif st.state == "checking":
            layout.label(text=st.text, icon="TIME")
        elif st.state == "installing":
            done, steps, label = install_progress()
            layout.progress(factor=done / max(steps, 1), type="BAR", text=f"Installing: {label}")
            layout.operator(DREAMSMITH_OT_cancel_install.bl_idname, icon="CANCEL")
        else:
            wrapped(layout, st.text, icon="ERROR", width=_width(context))
            row = layout.row()
            row.enabled = online_access() or st.state == "failed"
            row.operator(DREAMSMITH_OT_install_dependencies.bl_idname, text="Install Engine",
                         icon="IMPORT").action = "INSTALL"
            if not online_access():
                wrapped(layout, online_hint("install the engine"), icon="INFO", width=_width(context))


class DREAMSMITH_PT_input(_Sidebar, bpy.types.Panel):
    """What to make."""

    bl_idname = "DREAMSMITH_PT_input"
    bl_label = "Input"
    bl_parent_id = "DREAMSMITH_PT_main"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        props = context.scene.dreamsmith
        layout.row().prop(props, "source", expand=True)
        layout.prop(props, "prompt", text="Prompt (Optional)" if props.source == "IMAGE" else "Prompt")
        layout.prop(props, "negative_prompt")
        layout.prop(props, "preset")
        row = layout.row(align=True)
        sub = row.row(align=True)
        sub.enabled = not props.random_seed
        sub.prop(props, "seed")
        row.prop(props, "random_seed", text="", icon="FILE_REFRESH")
        layout.prop(props, "variations")
        layout.row().prop(props, "faces", expand=True)
        layout.prop(props, "lods")


class DREAMSMITH_PT_picture(_Sidebar, bpy.types.Panel):
    """The picture of image to 3D and the camera it was taken with."""

    bl_idname = "DREAMSMITH_PT_picture"
    bl_label = "Picture"
    bl_parent_id = "DREAMSMITH_PT_main"

    @classmethod
    def poll(cls, context):
        """Only with the Picture source."""
        return _Sidebar.poll(context) and context.scene.dreamsmith.source == "IMAGE"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        props = context.scene.dreamsmith
        layout.template_ID(props, "image", open="image.open")
        row = layout.row()
        row.active = props.image is None  # a picked image comes first
        row.prop(props, "image_path")
        layout.prop(props, "elevation")
        layout.prop(props, "fov")


class DREAMSMITH_PT_models(_Sidebar, bpy.types.Panel):
    """The priors the next job uses, whether they are on this computer, and what the demo can draw."""

    bl_idname = "DREAMSMITH_PT_models"
    bl_label = "Models"
    bl_parent_id = "DREAMSMITH_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        col = layout.column(align=True)
        prefs = get_preferences()
        coarse, fine = job_models(context.scene.dreamsmith.preset, prefs.coarse_model, prefs.fine_model)
        width = _width(context)
        for stage, model_id in (("Models", coarse),) if coarse == fine else (("Coarse", coarse), ("Fine", fine)):
            info = model_info(model_id)
            name = info.label if info is not None else model_id
            if model_on_disk(model_id, bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else ""):
                col.label(text=f"{stage}: {name}", icon="CHECKMARK")
            else:
                size = f" ({info.download_gb:g} GB)" if info is not None else ""
                how = ("the job downloads it, or download it in the preferences" if online_access(prefs)
                       else "download it in the preferences (" + online_hint("download it") + ")")
                wrapped(col, f"{stage}: not on this computer: {name}{size}; {how}",
                        icon="IMPORT" if online_access(prefs) else "ERROR", width=width)
        vram = max((info.vram_gb for info in map(model_info, (coarse, fine)) if info is not None), default=0.0)
        if vram > 0:
            col.label(text=f"Needs a GPU with about {vram:g} GB of memory.", icon="INFO")
        if DEMO_MODEL in (coarse, fine):
            wrapped(col, "The demo draws a red, green, blue or yellow cube, sphere, cone or torus only.", icon="INFO",
                    width=width)


def _draw_estimate(layout, context) -> None:
    """What the next Generate will cost here, by the engine's own estimate, and a warning when it will not fit."""
    from .engine_status import estimate, status

    prefs = get_preferences()
    if status(prefs).state not in ("ready", "checking"):
        return
    props = context.scene.dreamsmith
    coarse, fine = job_models(props.preset, prefs.coarse_model, prefs.fine_model)
    cost = estimate(prefs, "generate", props.preset, prefs.coarse_model, prefs.fine_model)
    if cost is None:
        layout.label(text="Estimating the cost...", icon="TIME")
    elif "error" in cost:
        wrapped(layout, f"No estimate: {cost['error']}", icon="ERROR", width=_width(context))
    else:
        variations = f" each, {props.variations} jobs" if props.variations > 1 else ""
        layout.label(text=f"Estimate: {cost['text']}{variations}", icon="SORTTIME")
        if cost.get("problem"):
            wrapped(layout, cost["problem"], icon="ERROR", width=_width(context))


class DREAMSMITH_PT_job(_Sidebar, bpy.types.Panel):
    """Run: the cost, the buttons, the running job's progress and the queue."""

    bl_idname = "DREAMSMITH_PT_job"
    bl_label = "Job"
    bl_parent_id = "DREAMSMITH_PT_main"

    def draw(self, context):
        layout = self.layout
        job = job_props(context)
        running = job_running()
        _draw_estimate(layout, context)
        col = layout.column(align=True)
        generate = "Add to Queue" if running else "Generate"
        col.operator(DREAMSMITH_OT_generate.bl_idname, text=generate, icon="PLAY")
        row = col.row(align=True)
        row.operator(DREAMSMITH_OT_retexture.bl_idname, icon="TEXTURE")
        row.operator(DREAMSMITH_OT_edit.bl_idname, icon="MODIFIER")
        col.operator("dreamsmith.remesh_quads", icon="MOD_REMESH")
        width = _width(context)
        if running:
            box = layout.box()
            title = f"Job {job_state.number} of {job_state.of}" if job_state.of > 1 else "Job"
            box.label(text=f"{title}: {job_state.meta.request.values.get('prompt') or 'picture'}"
                      if job_state.meta is not None else title)
            box.progress(factor=job.progress, type="BAR",
                         text=progress_text(job, time.monotonic() - job_state.started))
            if job.stage_message:
                wrapped(box, job.stage_message[:1].upper() + job.stage_message[1:], icon="INFO", width=width)
            row = box.row(align=True)
            row.operator(DREAMSMITH_OT_cancel.bl_idname, icon="CANCEL")
            if job_state.queue:
                row.operator(DREAMSMITH_OT_cancel.bl_idname, text="Cancel All", icon="X").all = True
            for i, item in enumerate(job_state.queue):
                qrow = box.row()
                qrow.label(text=f"{job_state.number + i + 1}. {item.label}", icon="SORTTIME")
                qrow.operator(DREAMSMITH_OT_remove_queued.bl_idname, text="", icon="X").index = i
        elif job.message:
            wrapped(layout, job.message, icon="ERROR" if job.message_is_error else "INFO", width=width)
        image = bpy.data.images.get(job.preview_image) if job.preview_image else None
        if image is not None and image.preview is not None:
            layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)


class DREAMSMITH_PT_history(_Sidebar, bpy.types.Panel):
    """This file's results, newest first."""

    bl_idname = "DREAMSMITH_PT_history"
    bl_label = "History"
    bl_parent_id = "DREAMSMITH_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        from .history import (
            DREAMSMITH_OT_continue,
            DREAMSMITH_OT_recall,
            DREAMSMITH_OT_reroll,
            DREAMSMITH_OT_select_result,
            describe,
            results,
        )

        layout = self.layout
        found = results()
        if not found:
            layout.label(text="No results in this file yet.")
            return
        for obj in found[:20]:
            box = layout.box()
            what, how = describe(obj)
            box.label(text=f"{obj.name}: {what}", icon="OBJECT_DATA")
            box.label(text=how)
            row = box.row(align=True)
            for op, icon in ((DREAMSMITH_OT_recall, "RECOVER_LAST"), (DREAMSMITH_OT_reroll, "FILE_REFRESH"),
                             (DREAMSMITH_OT_select_result, "RESTRICT_SELECT_OFF"), (DREAMSMITH_OT_continue, "FORWARD")):
                row.operator(op.bl_idname, text=op.bl_label, icon=icon).object_name = obj.name
        if len(found) > 20:
            layout.label(text=f"... and {len(found) - 20} older results.")


def menu_add_mesh(self, context) -> None:
    """Add > Mesh: generate from the sidebar's prompt or picture."""
    self.layout.separator()
    self.layout.operator(DREAMSMITH_OT_generate.bl_idname, text="Dreamsmith: Generate", icon="PLAY")


class DREAMSMITH_MT_object(bpy.types.Menu):
    """Object > Dreamsmith."""

    bl_idname = "DREAMSMITH_MT_object"
    bl_label = "Dreamsmith"

    def draw(self, context):
        layout = self.layout
        layout.operator(DREAMSMITH_OT_generate.bl_idname, icon="PLAY")
        layout.operator(DREAMSMITH_OT_retexture.bl_idname, icon="TEXTURE")
        layout.operator(DREAMSMITH_OT_edit.bl_idname, icon="MODIFIER")
        layout.operator("dreamsmith.remesh_quads", icon="MOD_REMESH")


def menu_object(self, context) -> None:
    """The Object menu's Dreamsmith submenu."""
    self.layout.separator()
    self.layout.menu(DREAMSMITH_MT_object.bl_idname)


PANELS = (DREAMSMITH_PT_main, DREAMSMITH_PT_input, DREAMSMITH_PT_picture, DREAMSMITH_PT_models, DREAMSMITH_PT_job,
          DREAMSMITH_PT_history, DREAMSMITH_MT_object)
MENUS = (("VIEW3D_MT_mesh_add", menu_add_mesh), ("VIEW3D_MT_object", menu_object))
