"""The engine's state after a generate (colour/density field and DMTet geometry), kept so that a later edit can
start from it: one safetensors file (never pickle) with the job's config in its metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..geometry.dmtet import DMTetConfig, DMTetGeometry
from ..meshio import FileWrite, write_files
from ..render.volume import BackgroundMLP
from ..runtime.errors import DreamsmithError, InputError
from ..settings.config import from_dict
from .field import FieldConfig, NeRFField

FORMAT = "dreamsmith-state-1"


class EngineState(NamedTuple):
    """What :func:`load_state` returns.

    Attributes:
        field: The coarse stage's density and colour field.
        geo: The mesh stage's DMTet geometry.
        config: The job's config, as a dict.
        background: The coarse stage's learned background, when it learned one; else ``None``.
    """

    field: NeRFField
    geo: DMTetGeometry
    config: dict[str, Any]
    background: BackgroundMLP | None


def save_state(path: str | os.PathLike, field: NeRFField, geo: DMTetGeometry, config: dict[str, Any],
               background: BackgroundMLP | None = None) -> Path:
    """Write ``field``, ``geo``, the learned ``background`` (if any) and ``config`` (the job's config as a dict) to
    ``path`` atomically."""
    write_files(state_files(path, field, geo, config, background))
    return Path(path)


def state_files(path: str | os.PathLike, field: NeRFField, geo: DMTetGeometry, config: dict[str, Any],
                background: BackgroundMLP | None = None) -> list[FileWrite]:
    """The file of :func:`save_state`, to write together with a job's other outputs."""
    tensors = {f"field.{k}": v.detach().cpu().contiguous() for k, v in field.state_dict().items()}
    if background is not None:
        tensors.update({f"background.{k}": v.detach().cpu().contiguous() for k, v in background.state_dict().items()})
    tensors["geo.sdf"] = geo.sdf.detach().cpu().contiguous()
    tensors["geo.deform"] = geo.deform.detach().cpu().contiguous()
    tensors["geo.bbox"] = geo.bbox.detach().cpu().contiguous()  # the object's box, when the grid was tight
    meta = {"format": FORMAT, "config": json.dumps(config), "field": json.dumps(_field_cfg(config)),
            "dmtet": json.dumps(config["mesh"]["dmtet"]), "scene_radius": str(config["scene_radius"])}
    return [(Path(path), lambda p: save_file(tensors, str(p), metadata=meta))]


def _field_cfg(config: dict[str, Any]) -> dict[str, Any]:
    return config["coarse"]["field"]


def load_state(path: str | os.PathLike, device: torch.device) -> EngineState:
    """The field, the geometry, the config and the learned background saved by :func:`save_state`.

    Raises:
        InputError: The file is missing or is not a Dreamsmith state.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"No saved engine state at {path}; edit from the mesh instead.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path} is not a readable engine state ({exc}).") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a Dreamsmith engine state.")
    try:
        return _restore(meta, tensors, device)
    except (KeyError, ValueError, TypeError, RuntimeError, DreamsmithError) as exc:
        raise InputError(f"{path} is an incomplete or damaged engine state ({type(exc).__name__}: {exc}); edit from "
                         "the mesh instead.") from None


def _restore(meta: dict[str, str], tensors: dict[str, torch.Tensor], device: torch.device) -> EngineState:
    r = float(meta["scene_radius"])
    bbox = torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32, device=device)
    field = NeRFField(from_dict(FieldConfig, json.loads(meta["field"])), bbox).to(device)
    weights = {k[len("field."):]: v for k, v in tensors.items() if k.startswith("field.")}
    prior = weights.pop("density_prior", None)  # [1, 1, z, y, x] when the field started from a mesh
    if prior is not None:
        field.set_density_prior(prior[0, 0].permute(2, 1, 0))
    field.load_state_dict(weights)
    geo_box = tensors["geo.bbox"].to(device) if "geo.bbox" in tensors else bbox  # states before tight grids: the scene
    geo = DMTetGeometry(from_dict(DMTetConfig, json.loads(meta["dmtet"])), geo_box).to(device)
    with torch.no_grad():
        geo.sdf.copy_(tensors["geo.sdf"])
        geo.deform.copy_(tensors["geo.deform"])
    config = json.loads(meta["config"])
    background = None
    bg_weights = {k[len("background."):]: v for k, v in tensors.items() if k.startswith("background.")}
    if bg_weights:
        volume = config["coarse"]["volume"]
        background = BackgroundMLP(volume["bg_hidden"], volume["bg_freqs"]).to(device)
        background.load_state_dict(bg_weights)
    return EngineState(field, geo, config, background)
