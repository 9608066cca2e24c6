"""Reconstruction from posed images: coarse NeRF -> mesh stage -> bake -> export, with progress and cancellation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..finish.bake import BakeConfig
from ..guidance.reference import ReferenceConfig, ReferenceGuidance
from ..runtime.device import resolve_device, seeded_job
from ..runtime.events import CancelToken, ProgressCallback, StageTimes
from ..scene.datasets import load_posed_images
from ..settings.presets import RECONSTRUCT_PRESETS, config_maker
from ..stages.coarse import CoarseConfig, CoarseReferenceConfig
from ..stages.mesh import MeshReferenceConfig, MeshStageConfig
from ..stages.objectives import PosedRays, PosedViews
from .io import check_output_path, result_extras, result_summary, write_outputs
from .pipeline import Carving, Pipeline, run_pipeline


@dataclass
class ReconstructConfig:
    """A reconstruction job.

    Attributes:
        seed: Seed of every random choice (same seed, same device: same result).
        reference: The posed-image guidance.
        max_image_size: Downsample input images so their longer side is at most this (0: keep).
        coarse: The coarse NeRF stage.
        coarse_reference: How the coarse stage uses the posed images.
        mesh: The mesh stage.
        mesh_reference: How the mesh stage uses the posed images.
        bake: UV unwrapping and texture baking.
    """

    seed: int = 0
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    max_image_size: int = 0
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    coarse_reference: CoarseReferenceConfig = field(default_factory=CoarseReferenceConfig)
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
        timings = StageTimes()
        guidance = ReferenceGuidance(data, cfg.reference, dev)
        bbox = guidance.scene_box()

        spec = Pipeline(
            name=Path(images).name or "object", mesh=cfg.mesh, bake=cfg.bake,
            keep_fraction=cfg.mesh.min_component_fraction, coarse=cfg.coarse,
            coarse_objective=PosedRays(guidance, cfg.coarse_reference.rays_per_step,
                                       cfg.coarse_reference.opacity_weight),
            mesh_objective=lambda: PosedViews(guidance, cfg.mesh.render_size, cfg.mesh_reference.views_per_step),
            carving=Carving(guidance.carve), coarse_every=10)
        mesh = run_pipeline(spec, bbox, dev, gen, timings, callback, cancel).mesh
        extras = result_extras("reconstruct", preset=preset, seed=cfg.seed)
        write_outputs(mesh, out_path, preview, extras)
        return result_summary(out_path, len(mesh.faces), len(mesh.verts), cfg, timings, bbox=bbox.tolist())
