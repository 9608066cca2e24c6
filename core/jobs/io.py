"""What every job does at its edges: checking inputs before any work, merging the user's model choices into a
config, and writing results (atomically)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ..finish.bake import BakeConfig
from ..geometry.mesh_ops import largest_components
from ..meshio import FileWrite, TexturedMesh, glb_files, obj_files, obj_sidecars, read_mesh, write_files
from ..render.preview import preview_files
from ..runtime.device import resolve_device
from ..runtime.errors import ConfigError, InputError
from ..settings.config import to_dict

MAX_PROMPT_CHARS = 1000


def merge_models(overrides: dict[str, Any], keys: tuple[str, ...], model: str | None = None,
                 fine_model: str | None = None, allow_network: bool = False,
                 cache_dir: str | None = None) -> dict[str, Any]:
    """``overrides`` (not changed) with the models chosen on a command line or in a job merged in, for a job whose
    config names its priors ``keys`` (:attr:`~.JobKind.priors`).

    Every job names its priors ``coarse_model`` and/or ``fine_model``. ``model`` sets the coarse prior and, unless
    ``fine_model`` or the overrides name one, the fine prior too (one model for both stages); a job with only a
    fine prior (re-texturing) takes ``model`` for it. ``allow_network`` and ``cache_dir`` apply to every prior. The
    CLI and the worker both come through here, so the same inputs give the same config.
    """
    over: dict[str, Any] = copy.deepcopy(overrides)
    for key in keys:
        if key in over and not isinstance(over[key], dict):
            raise ConfigError(f"Config {key!r} must be a mapping, got {type(over[key]).__name__}.")
    if "coarse_model" not in keys:
        fine_model = fine_model or model
    elif model:
        over.setdefault("coarse_model", {})["model"] = model
        over.setdefault("fine_model", {}).setdefault("model", fine_model or "")
    if fine_model and "fine_model" in keys:
        over.setdefault("fine_model", {})["model"] = fine_model
    for key in keys:
        if allow_network:
            over.setdefault(key, {})["allow_network"] = True
        if cache_dir:
            over.setdefault(key, {})["cache_dir"] = cache_dir
    return over


def check_prompt(prompt: str, what: str = "prompt") -> str:
    """Cheap checks before anything is loaded (the tokenizer checks the length in tokens later)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"The {what} is empty; describe the object to make, e.g. 'a red cube'.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"The {what} is {len(prompt)} characters long; keep it under {MAX_PROMPT_CHARS}.")
    return prompt.strip()


def check_inputs(prompt: str, negative_prompt: str, out, preview, device: str,
                 state_out=None) -> tuple[str, str, Path, torch.device]:
    """The checks every prompt-driven job does before loading anything: prompt, negative prompt, output, preview
    and state paths, device. Returns them cleaned up."""
    prompt = check_prompt(prompt)
    negative_prompt = check_prompt(negative_prompt, "negative prompt") if negative_prompt.strip() else ""
    return prompt, negative_prompt, check_output_path(out, preview, state_out), resolve_device(device)


def check_writable(path: Path, what: str) -> None:
    """That a file can be written at ``path`` (its folder existing or creatable there), without writing anything."""
    if path.is_dir():
        raise InputError(f"The {what} {str(path)!r} is a folder; give a file name.")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"The {what} {str(path)!r} cannot be written: {str(folder)!r} is a file, not a folder.")
    target = path if path.exists() else folder
    if not os.access(target, os.W_OK) or (target is folder and not os.access(folder, os.X_OK)):
        raise InputError(f"The {what} {str(path)!r} cannot be written: no permission to write in {str(folder)!r}; "
                         "choose another folder.")


def check_output_path(out: str | os.PathLike, preview: str | os.PathLike | None = None,
                      state_out: str | os.PathLike | None = None) -> Path:
    """Validate the output (.glb or .obj, with the OBJ's .mtl and .png), the preview (.png) and the state
    (.safetensors) paths before any work starts: the right endings, writable, and no two the same file."""
    path = Path(out)
    if path.suffix.lower() not in (".glb", ".obj"):
        raise InputError(f"The output {str(path)!r} must end in .glb or .obj.")
    files = {"output": path}
    if path.suffix.lower() == ".obj":
        files["output's material"], files["output's texture"] = obj_sidecars(path)
    if preview is not None:
        if Path(preview).suffix.lower() != ".png":
            raise InputError(f"The preview {str(preview)!r} must end in .png.")
        files["preview"] = Path(preview)
    if state_out is not None:
        if Path(state_out).suffix != ".safetensors":
            raise InputError(f"The state file {str(state_out)!r} must end in .safetensors.")
        files["state file"] = Path(state_out)
    seen: dict[Path, str] = {}
    for what, file in files.items():
        key = file.resolve()
        if key in seen:
            raise InputError(f"The {what} and the {seen[key]} would be the same file {str(file)!r}; give them "
                             "different names.")
        seen[key] = what
        check_writable(file, what)
    return path


def result_extras(command: str, **fields: Any) -> dict[str, Any]:
    """What a result file says of itself (the GLB node's extras, which the add-on reads back): the generator and its
    version, the command, then ``fields`` in their order (prompt, seed, preset, models, ...)."""
    return {"generator": f"Dreamsmith {__version__}", "command": command, **fields}


def result_summary(out_path: Path, faces: int, vertices: int, cfg: Any, seconds: dict[str, float] | None = None,
                   **fields: Any) -> dict[str, Any]:
    """A job's summary (the CLI's last line, the worker's result message): the file, its face and vertex counts,
    seconds per stage, the config it ran with (as a dict), then ``fields``."""
    summary: dict[str, Any] = {"out": str(out_path), "faces": int(faces), "vertices": int(vertices)}
    if seconds is not None:
        summary["seconds"] = seconds
    return summary | {"config": to_dict(cfg), **fields}


def result_files(mesh: TexturedMesh, path: Path, extras: dict[str, Any]) -> list[FileWrite]:
    """The textured mesh as GLB, or OBJ (+MTL+PNG)."""
    return glb_files(mesh, path, extras) if path.suffix.lower() == ".glb" else obj_files(mesh, path)


def finish_mesh(geo, color_fn, cfg_bake: BakeConfig, min_fraction: float, name: str) -> TexturedMesh:
    """Extract the final surface (dropping small pieces), and bake it at the config's face budget and levels of
    detail (:func:`~dreamsmith.core.finish.levels.bake_levels`): unwrapped, the colour field baked into a texture, and a
    normal map of the full surface on every level coarser than it."""
    with torch.no_grad():
        verts, faces = geo()
    v, f = largest_components(verts.detach(), faces, keep=1_000_000, min_fraction=min_fraction)
    if len(f) == 0:
        raise InputError("The reconstruction produced an empty mesh; check the input images' alpha.")

    def color_query(points: torch.Tensor) -> torch.Tensor:
        return color_fn(points).clamp(0, 1)

    from ..finish.levels import bake_levels

    return bake_levels(v, f, color_query, cfg_bake, name=name, device=verts.device)


def read_input(mesh_path: str | os.PathLike, max_faces: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A job's input mesh ``(verts, faces, uvs)``, checked before any work: faces present (at most ``max_faces``
    when > 0), finite positions, and a surface with area."""
    verts, faces, uvs, _ = read_mesh(mesh_path)
    check_mesh(verts, faces, Path(mesh_path).name, max_faces)
    return verts, faces, uvs


def check_mesh(verts: np.ndarray, faces: np.ndarray, name: str, max_faces: int = 0) -> None:
    """The checks of an input mesh (see :func:`read_input`); ``name`` is what the errors call it."""
    if len(faces) == 0:
        raise InputError(f"{name} has no faces; give a mesh with polygons.")
    if max_faces and len(faces) > max_faces:
        raise InputError(f"{name} has {len(faces):,} faces; this job takes at most {max_faces:,}. Decimate it "
                         "(Blender's Decimate modifier, applied) and try again.")
    if not np.isfinite(verts).all():
        raise InputError(f"{name} has NaN or infinite vertex positions; fix the mesh first.")
    tri = verts.astype(np.float64)[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    size = float(np.ptp(verts, axis=0).max())
    if not area > 1e-10 * size**2:  # a single point (size 0) fails too
        raise InputError(f"{name} has no surface area (all its faces are flat lines or points); give a mesh with "
                         "real faces.")


def write_outputs(mesh: TexturedMesh, out_path: Path, preview, extras: dict[str, Any],
                  more: list[FileWrite] | None = None) -> None:
    """Write a job's outputs all together or none: the result, the preview (if asked for) and ``more`` (a state)."""
    files = result_files(mesh, out_path, extras) + (preview_files(mesh, preview) if preview is not None else [])
    write_files(files + (more or []))


