"""The written mesh at a face budget, and its levels of detail: each decimated from the full surface, unwrapped,
its colour baked from the colour field and, when it is coarser than the surface, a normal map baked from it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..meshio import TexturedMesh, vertex_normals
from ..meshio.tangents import vertex_tangents
from .bake import BakeConfig, ColorFn, bake_mesh
from .decimate import MIN_FACES, decimate
from .normal_map import bake_normal_map


def level_budgets(full: int, cfg: BakeConfig) -> list[int]:
    """The face count of each level: LOD0 at the budget (or the full count), each next a quarter of the one
    before; a level that would have fewer than :data:`~.decimate.MIN_FACES` is left out (a small surface has
    fewer levels than asked). A surface over the unwrap's limit (``max_faces_for_unwrap``, as DMTet 192 gives at
    the high preset) is decimated to it rather than failing the job at its last step."""
    first = min(cfg.faces or full, full, cfg.max_faces_for_unwrap)
    return [first] + [first // 4**k for k in range(1, cfg.lods) if first // 4**k >= MIN_FACES]


def bake_levels(verts, faces, color_fn: ColorFn, cfg: BakeConfig, name: str,
                device: torch.device | str | None = None) -> TexturedMesh:
    """The textured mesh of the surface ``(verts, faces)`` at ``cfg``'s budget, with ``cfg.lods - 1`` coarser levels
    in its ``lods``; levels coarser than the surface carry a normal map of it (``cfg.normal_map``)."""
    full_v = verts.detach().cpu().numpy() if isinstance(verts, torch.Tensor) else np.asarray(verts)
    full_f = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    full_v, full_f = full_v.astype(np.float32), full_f.astype(np.int64)
    full_n = vertex_normals(full_v, full_f)
    levels = []
    for k, budget in enumerate(level_budgets(len(full_f), cfg)):
        v, f = (full_v, full_f) if budget >= len(full_f) else decimate(full_v, full_f, budget)
        mesh = bake_mesh(v, f, color_fn, cfg, name=name if cfg.lods == 1 else f"{name}_LOD{k}", device=device)
        if cfg.normal_map and len(f) < len(full_f):
            assert mesh.normals is not None  # bake_mesh gives every mesh its normals
            tangents = vertex_tangents(mesh.verts, mesh.faces, mesh.uvs, mesh.normals)
            normal_map = bake_normal_map(mesh.verts, mesh.faces, mesh.uvs, mesh.normals, tangents, full_v, full_f,
                                         full_n, cfg.texture_size, cfg.padding)
            mesh = replace(mesh, normal_map=normal_map, tangents=tangents)
        levels.append(mesh)
    return replace(levels[0], name=name, lods=tuple(levels[1:]))
