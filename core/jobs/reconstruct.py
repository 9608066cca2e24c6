"""Reconstruction from posed images: coarse NeRF -> mesh stage -> bake -> export, with progress and cancellation."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ..bake import BakeConfig
from ..config import to_dict
from ..datasets import load_posed_images
from ..device import resolve_device, seeded_job
from ..events import CancelToken, ProgressCallback, StageReporter
from ..guidance.reference import ReferenceConfig, ReferenceGuidance
from ..presets import RECONSTRUCT_PRESETS, config_maker
from ..stages.coarse import CoarseConfig, train_coarse
from ..stages.mesh import MeshReferenceConfig, MeshStageConfig, train_mesh
from ..stages.objectives import PosedRays, PosedViews
from ..stages.surface import init_geometry
from .io import check_output_path, finish_mesh, write_outputs


@dataclass
class ReconstructConfig:
    """A reconstruction job.

    Attributes:
        seed: Seed of every random choice (same seed, same device: same result).
        reference: The posed-image guidance.
        max_image_size: Downsample input images so their longer side is at most this (0: keep).
        coarse: The coarse NeRF stage.
        mesh: The mesh stage.
        mesh_reference: How the mesh stage uses the posed images.
        bake: UV unwrapping and texture baking.
    """

    seed: int = 0
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    max_image_size: int = 0
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    mesh: MeshStageConfig = field(default_factory=MeshStageConfig)
    mesh_reference: MeshReferenceConfig = field(default_factory=MeshReferenceConfig)
    bake: BakeConfig = field(default_factory=BakeConfig)


reconstruct_config = config_maker(ReconstructConfig, RECONSTRUCT_PRESETS)


def run_reconstruct(images: str | os.PathLike, out: str | os.PathLike, cfg: ReconstructConfig, device: str = "auto",
                    callback: ProgressCallback | None = None, cancel: CancelToken | None = None,
                    preset: str = "custom", preview: str | os.PathLike | None = None) -> dict[str, Any]:
    """Reconstruct a textured mesh from posed images and write it to ``out``.

    Returns:
        A summary: output path, face count, seconds per stage.
    """
    out_path = check_output_path(out, preview)
    dev = resolve_device(device)
    data = load_posed_images(images, split="train", max_size=cfg.max_image_size or None)
    with seeded_job(cfg.seed, dev) as gen:
        timings: dict[str, float] = {}
        guidance = ReferenceGuidance(data, cfg.reference, dev)
        bbox = guidance.scene_box()

        t0 = time.perf_counter()
        rays = PosedRays(guidance, cfg.coarse.rays_per_step, cfg.coarse.opacity_weight)
        model, _, _ = train_coarse(cfg.coarse, rays, bbox, dev, gen,
                                   StageReporter("coarse", cfg.coarse.steps, callback, cancel, every=10))
        timings["coarse"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        geo = init_geometry(cfg.mesh, bbox, dev, model.density, guidance.carve)
        views = PosedViews(guidance, cfg.mesh.render_size, cfg.mesh_reference.views_per_step)
        train_mesh(cfg.mesh, views, model, geo, gen, StageReporter("mesh", cfg.mesh.steps, callback, cancel,
                                                                       every=5))
        timings["mesh"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        bake_rep = StageReporter("bake", 1, callback, cancel)
        mesh = finish_mesh(geo, model.albedo, cfg.bake, cfg.mesh.min_component_fraction, Path(images).name or "object")
        bake_rep.step(1)
        timings["bake"] = time.perf_counter() - t0

        extras = {"generator": f"Dreamsmith {__version__}", "command": "reconstruct", "preset": preset,
                  "seed": cfg.seed}
        if cancel is not None:
            cancel.check()
        write_outputs(mesh, out_path, preview, extras)
        return {"out": str(out_path), "faces": int(len(mesh.faces)), "vertices": int(len(mesh.verts)),
                "seconds": timings, "bbox": bbox.tolist(), "config": to_dict(cfg)}
