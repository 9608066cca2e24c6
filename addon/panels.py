"""The 3D View sidebar panel (tab "Dreamsmith"): inputs (from text or from a picture), Generate, progress,
preview, Cancel."""

import bpy

from ..protocol import DEMO_MODEL, job_models, model_info, model_on_disk
from .deps import installing, status_text
from .operators import (
    DREAMSMITH_OT_cancel,
    DREAMSMITH_OT_edit,
    DREAMSMITH_OT_generate,
    DREAMSMITH_OT_retexture,
)
from .preferences import get_preferences, online_access
from .properties import job_props
from .running import job_running


def _eta_text(seconds: float) -> str:
    if seconds < 0:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"ETA {minutes}:{secs:02d}" if minutes else f"ETA {secs}s"


def _draw_models(col, preset: str) -> None:
    """The priors a Generate will use, whether each is on this computer, the GPU memory they need, and what the demo
    can draw."""
    prefs = get_preferences()
    coarse, fine = job_models(preset, prefs.coarse_model, prefs.fine_model)
    for stage, model_id in (("Models", coarse),) if coarse == fine else (("Coarse", coarse), ("Fine", fine)):
        info = model_info(model_id)
        name = info.label if info is not None else model_id
        if model_on_disk(model_id, bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else ""):
            col.label(text=f"{stage}: {name}", icon="CHECKMARK")
        else:
            size = f" ({info.download_gb:g} GB)" if info is not None else ""
            how = ("the job downloads it, or download it in the preferences" if online_access(prefs)
                   else "download it in the preferences (needs Allow Online Access)")
            col.label(text=f"{stage}: not on this computer: {name} - {how}{size}",
                      icon="IMPORT" if online_access(prefs) else "ERROR")
    vram = max((info.vram_gb for info in map(model_info, (coarse, fine)) if info is not None), default=0.0)
    if vram > 0:
        col.label(text=f"Needs a GPU with about {vram:g} GB of memory.", icon="INFO")
    if DEMO_MODEL in (coarse, fine):
        col.label(text="The demo draws a red, green, blue or yellow cube, sphere, cone or torus only.", icon="INFO")


def _draw_picture(col, props) -> None:
    """From image: the picture (an image in the file, else a file on disk) and the camera it was taken with."""
    col.template_ID(props, "image", open="image.open")
    row = col.row()
    row.active = props.image is None  # a picked image comes first
    row.prop(props, "image_path")
    col.prop(props, "elevation")
    col.prop(props, "fov")


class DREAMSMITH_PT_generate(bpy.types.Panel):
    """Generate a textured mesh from a prompt or a picture."""

    bl_idname = "DREAMSMITH_PT_generate"
    bl_label = "Dreamsmith"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Dreamsmith"

    @classmethod
    def poll(cls, context):
        """Shown whenever the scene has the add-on's properties."""
        return context.scene is not None and hasattr(context.scene, "dreamsmith")

    def draw(self, context):
        """Inputs (From text / From image) and Generate / Re-texture (selected) / Edit (active), greyed while a job
        runs; progress + Cancel; the last message; the live preview."""
        layout = self.layout
        props = context.scene.dreamsmith
        job = job_props(context)
        running = job_running()
        col = layout.column()
        col.enabled = not running
        col.row().prop(props, "source", expand=True)
        if props.source == "IMAGE":
            _draw_picture(col, props)
            col.prop(props, "prompt", text="Prompt (optional)")
        else:
            col.prop(props, "prompt")
        col.prop(props, "negative_prompt")
        col.prop(props, "preset")
        col.prop(props, "seed")
        _draw_models(layout.column(align=True), props.preset)
        if installing():
            layout.box().label(text=status_text() or "Installing the engine...", icon="TIME")
        col = layout.column(align=True)
        col.enabled = not running
        col.operator(DREAMSMITH_OT_generate.bl_idname, icon="PLAY")
        row = col.row(align=True)
        row.operator(DREAMSMITH_OT_retexture.bl_idname, icon="TEXTURE")
        row.operator(DREAMSMITH_OT_edit.bl_idname, icon="MODIFIER")
        if running:
            box = layout.box()
            stage = job.stage or "starting"
            if job.total > 0:
                text = f"{stage} {job.step}/{job.total}  {_eta_text(job.eta)}".strip()
                box.progress(factor=job.step / job.total, type="BAR", text=text)
            else:
                box.label(text=f"{stage}...", icon="TIME")
            if job.stage_message:
                box.label(text=job.stage_message[:1].upper() + job.stage_message[1:], icon="INFO")
            box.operator(DREAMSMITH_OT_cancel.bl_idname, icon="CANCEL")
        elif job.message:
            layout.label(text=job.message, icon="ERROR" if job.message_is_error else "INFO")
        image = bpy.data.images.get(job.preview_image) if job.preview_image else None
        if image is not None and image.preview is not None:
            layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)
