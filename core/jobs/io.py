"""What every job does at its edges: checking inputs before any work, merging the user's model choices into a
config, and writing results (atomically)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bake import BakeConfig, bake_mesh
from ..device import resolve_device
from ..errors import ConfigError, InputError
from ..mesh_ops import largest_components
from ..meshio import TexturedMesh, read_mesh, write_glb, write_obj
from ..render.preview import write_preview

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


def check_inputs(prompt: str, negative_prompt: str, out, preview, device: str) -> tuple[str, str, Path, torch.device]:
    """The checks every prompt-driven job does before loading anything: prompt, negative prompt, output and
    preview paths, device. Returns them cleaned up."""
    prompt = check_prompt(prompt)
    negative_prompt = check_prompt(negative_prompt, "negative prompt") if negative_prompt.strip() else ""
    return prompt, negative_prompt, check_output_path(out, preview), resolve_device(device)


def check_output_path(out: str | os.PathLike, preview: str | os.PathLike | None = None) -> Path:
    """Validate the output path (.glb or .obj) and the optional preview path (.png) before any work starts."""
    path = Path(out)
    if path.suffix.lower() not in (".glb", ".obj"):
        raise InputError(f"The output {str(path)!r} must end in .glb or .obj.")
    if path.exists() and path.is_dir():
        raise InputError(f"The output {str(path)!r} is a folder; give a file name ending in .glb or .obj.")
    if preview is not None and Path(preview).suffix.lower() != ".png":
        raise InputError(f"The preview {str(preview)!r} must end in .png.")
    return path


def write_result(mesh: TexturedMesh, path: Path, extras: dict[str, Any]) -> None:
    """Write the textured mesh atomically as GLB or OBJ (+MTL+PNG), creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".glb":
        write_glb(mesh, path, extras=extras)
    else:
        write_obj(mesh, path)


def finish_mesh(geo, color_fn, cfg_bake: BakeConfig, min_fraction: float, name: str) -> TexturedMesh:
    """Extract the final surface (dropping small pieces), unwrap it and bake the colour field into a texture."""
    with torch.no_grad():
        verts, faces = geo()
    v, f = largest_components(verts.detach(), faces, keep=1_000_000, min_fraction=min_fraction)
    if len(f) == 0:
        raise InputError("The reconstruction produced an empty mesh; check the input images' alpha.")

    def color_query(points: torch.Tensor) -> torch.Tensor:
        return color_fn(points).clamp(0, 1)

    return bake_mesh(v, f, color_query, cfg_bake, name=name, device=verts.device)


def read_input(mesh_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    verts, faces, uvs, _ = read_mesh(mesh_path)
    if len(faces) == 0:
        raise InputError(f"{mesh_path} has no faces; give a mesh with polygons.")
    if not np.isfinite(verts).all():
        raise InputError(f"{mesh_path} has NaN or infinite vertex positions; fix the mesh first.")
    return verts, faces, uvs


def write_outputs(mesh: TexturedMesh, out_path, preview, extras: dict[str, Any]) -> None:
    write_result(mesh, out_path, extras)
    if preview is not None:
        write_preview(mesh, preview)


