"""What a job sends to the engine: its config overrides, and the files it reads (the object to re-texture, edit or
remesh as OBJ, the picture of an image-to-3D job)."""

from __future__ import annotations

import json
import shutil

import bpy

from .image_source import job_picture


def parse_config(text: str) -> dict:
    """The sidebar's advanced JSON config overrides as a dict (empty text: none); ValueError when not an object."""
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("it must be a JSON object")
    return data


def write_job_files(command: str, target: str, work_dir, config: dict,
                    values: dict) -> tuple[object, object, dict, dict]:
    """Write what the engine reads into the job folder: a re-texture's or edit's object (``(mesh path, export info,
    config, values)``), or a generate's picture data-block (``values`` then name its file). A failure removes the job
    folder and raises ValueError."""
    from .mesh_io import export_for_engine, export_source

    try:
        if command == "generate":
            return None, None, config, job_picture(values, work_dir)
        if command == "transfer":  # the source (textured, as GLB) onto the target (with its UVs, as OBJ)
            info = export_for_engine(bpy.data.objects[target], str(work_dir / "target.obj"))
            source = export_source(bpy.data.objects[values["source"]], str(work_dir / "source.glb"))
            return source, info, dict(config, keep_uvs=True), values
        mesh_path = work_dir / "input.obj"
        info = export_for_engine(bpy.data.objects[target], str(mesh_path))
    except (ValueError, OSError) as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise ValueError(str(exc)) from exc
    if command == "retexture" and not info.same_topology:
        config["allow_new_uvs"] = False  # new UVs could not be put on the base mesh
    return mesh_path, info, config, values
