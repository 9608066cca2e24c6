"""What a job brings back into Blender: its preview images in the sidebar, its console lines in scripts, and its
result in the scene (a new object, or the target re-textured, edited or remeshed)."""

from __future__ import annotations

import bpy

from ..protocol import PROGRESS, result_models, stage_label
from .image_source import picture_props, result_name
from .states import stored_path

PREVIEW_IMAGE = "Dreamsmith Preview"


def window_override():
    """A context override with a window (timers run without one); empty in background mode."""
    wm = bpy.context.window_manager
    windows = list(wm.windows) if wm is not None else []
    return {"window": windows[0]} if windows and not bpy.app.background else {}


def load_preview(path: str, props) -> None:
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


def remove_preview(props) -> None:
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is not None:
        bpy.data.images.remove(image)
    if props is not None:
        props.preview_image = ""


def print_stage(msg: dict, seen: set[str]) -> None:
    """Scripts (``blender --background``): one console line per stage, at its first progress, with step/total and
    the ETA, and one for each new message of a stage (e.g. waiting for another process's kernel build)."""
    stage = str(msg.get("stage", ""))
    if msg.get("type") != PROGRESS or not stage:
        return
    note = str(msg.get("message") or "")
    if note and (stage, note) not in seen:
        seen.add((stage, note))
        print(f"Dreamsmith: {stage_label(stage)}: {note}", flush=True)
    if stage in seen or int(msg.get("total") or 0) <= 0 and note:
        return
    seen.add(stage)
    eta = msg.get("eta")
    eta_text = f", about {float(eta) / 60:.1f} min left in it" if isinstance(eta, (int, float)) and eta >= 0 else ""
    print(f"Dreamsmith: {stage_label(stage)} {int(msg.get('step') or 0)}/{int(msg.get('total') or 0)}{eta_text}",
          flush=True)


def import_outcome(outcome, meta) -> tuple[object, str]:
    """Bring a finished job's result into the scene; returns the object and what was done to it."""
    from .mesh_io import apply_edit, apply_retexture, apply_transfer
    from .scene_io import import_result

    summary = outcome.summary or {}
    models = result_models(summary)
    if meta.command == "generate":
        coarse, values = models.get("coarse") or meta.request.model, meta.request.values
        props = dict(meta.inputs(), coarse_model=coarse, fine_model=models.get("fine") or coarse,
                     state=stored_path(summary.get("state") or ""), **picture_props(values, summary))
        return import_result(outcome.out, name=result_name(values), props=props), "Added"
    target = bpy.data.objects.get(meta.target)
    if target is None:
        raise RuntimeError(f"The object {meta.target!r} was deleted while the job ran; nothing was changed.")
    props = dict(meta.inputs(), model=models.get("fine") or meta.request.model)
    if meta.command == "retexture":
        apply_retexture(target, outcome.out, meta.info, bool(summary.get("uvs_kept")), props)
        return target, "Re-textured"
    if meta.command == "transfer":
        apply_transfer(target, outcome.out, meta.info, bpy.data.objects.get(meta.request.values["source"]))
        return target, "Remeshed"
    return apply_edit(target, outcome.out, props, as_new_object=meta.as_new_object), "Edited"


def remove_made_object(name: str) -> None:
    """Remove an object (and its mesh) the add-on made for a job that then failed."""
    obj = bpy.data.objects.get(name)
    if obj is not None:
        mesh = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)
