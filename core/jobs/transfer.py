"""Bake any textured mesh onto any other: the target gets the source's base colour and, as a tangent-space normal
map, the source's surface detail, each texel from the source's nearest surface point. What lets an artist remesh
by hand (or with Blender's quad remesher) and keep the texture.

    python -m dreamsmith transfer --mesh SOURCE.glb --target TARGET.obj --out RESULT.glb [--new-uvs]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..finish.bake import BakeConfig, dilate, sample_texture, unwrap
from ..finish.normal_map import frame_texels, normal_map_of
from ..geometry.metrics import closest_points_on_mesh
from ..meshio import TexturedMesh, read_mesh, vertex_normals
from ..meshio.tangents import vertex_tangents
from ..runtime.errors import InputError
from ..runtime.events import CancelToken, ProgressCallback, StageReporter
from ..settings.presets import TRANSFER_PRESETS, config_maker
from .io import check_mesh, check_output_path, read_input, result_extras, result_summary, write_outputs


@dataclass
class TransferConfig:
    """A transfer job.

    Attributes:
        seed: Unused (a transfer draws no random numbers); kept so that every job takes ``--seed``.
        keep_uvs: Keep the target's own UVs when it has them (else it is unwrapped anew).
        bake: The texture size, seam padding, unwrap options and whether a normal map is baked.
    """

    seed: int = 0
    keep_uvs: bool = True
    bake: BakeConfig = field(default_factory=BakeConfig)


transfer_config = config_maker(TransferConfig, TRANSFER_PRESETS)


def read_source(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The source ``(verts, faces, uvs, texture)``, refused before any work when it has no texture to transfer."""
    verts, faces, uvs, texture = read_mesh(path)
    check_mesh(verts, faces, Path(path).name)
    if uvs is None or texture is None:
        raise InputError(f"{Path(path).name} has no texture (base-colour image with UVs) to transfer; give a "
                         "textured mesh as the source.")
    return verts, faces, uvs, texture


def check_target(verts: np.ndarray, faces: np.ndarray, name: str) -> None:
    """Refuse a target with zero-area faces (they get no texels and no tangent frame)."""
    tri = verts.astype(np.float64)[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    size = float(np.ptp(verts, axis=0).max())
    flat = int((area <= 1e-12 * size**2).sum())
    if flat:
        raise InputError(f"{name} has {flat} faces with no area; remove them first (Blender: Mesh > Clean Up > "
                         "Degenerate Dissolve) and try again.")


def transfer_maps(source: tuple, verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray, cfg: BakeConfig,
                  name: str) -> TexturedMesh:
    """The target ``(verts, faces, uvs)`` with the source's colour and, when ``cfg.normal_map``, its normals."""
    src_v, src_f, src_uv, src_tex = source
    normals = vertex_normals(verts, faces)
    tangents = vertex_tangents(verts, faces, uvs, normals)
    covered, at = frame_texels(verts, faces, uvs, normals, tangents, cfg.texture_size)  # one nearest-point search
    _, tri, bary = closest_points_on_mesh(at[:, :3], src_v, src_f, candidates=8)  # colour and normals both
    at_uv = (bary[:, :, None] * np.asarray(src_uv, np.float64)[np.asarray(src_f)[tri]]).sum(1)
    image = np.zeros((cfg.texture_size, cfg.texture_size, 3), np.float32)
    image[covered] = sample_texture(src_tex[..., :3], at_uv)
    texture = np.round(dilate(image, covered, cfg.padding) * 255.0).clip(0, 255).astype(np.uint8)
    if not cfg.normal_map:
        return TexturedMesh(verts, faces, uvs, normals, texture, name)
    normal_map = normal_map_of(covered, at, tri, bary, src_f, vertex_normals(src_v, src_f), cfg.padding)
    return TexturedMesh(verts, faces, uvs, normals, texture, name, normal_map=normal_map, tangents=tangents)


def run_transfer(mesh: str | os.PathLike, target: str | os.PathLike, out: str | os.PathLike, cfg: TransferConfig,
                 device: str = "auto", callback: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 preset: str = "custom", preview: str | os.PathLike | None = None) -> dict[str, Any]:
    """Bake the textured ``mesh`` (the source) onto ``target`` and write the result to ``out``.

    Returns:
        A summary: output path, counts, whether the target's UVs were kept.
    """
    out_path = check_output_path(out, preview)
    source = read_source(mesh)
    verts, faces, uvs = read_input(target)
    check_target(verts, faces, Path(target).name)
    reporter = StageReporter("bake", 2, callback, cancel)
    kept = cfg.keep_uvs and uvs is not None
    if not kept:
        verts, faces, uvs, _ = unwrap(verts, faces, cfg.bake)
    assert uvs is not None  # kept, or new
    reporter.step(1)
    result = transfer_maps(source, verts, faces, uvs, cfg.bake, Path(target).stem)
    reporter.step(2)
    extras = result_extras("transfer", source=Path(mesh).name, preset=preset)
    write_outputs(result, out_path, preview, extras)
    return result_summary(out_path, len(faces), len(verts), cfg, uvs_kept=kept)
