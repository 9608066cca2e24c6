"""The staged pipeline: coarse NeRF -> mesh stage -> bake -> export, with progress and cancellation."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .bake import BakeConfig, bake_mesh
from .coarse import CoarseConfig, train_coarse_reference
from .config import from_dict, to_dict
from .datasets import load_posed_images
from .device import resolve_device, seeded_job
from .errors import InputError
from .events import CancelToken, ProgressCallback, StageReporter
from .export import TexturedMesh, write_glb, write_obj
from .guidance.reference import ReferenceConfig, ReferenceGuidance
from .mesh_ops import largest_components
from .mesh_stage import MeshStageConfig, train_mesh_reference
from .presets import RECONSTRUCT_PRESETS, preset_overrides
from .preview import write_preview


@dataclass
class ReconstructConfig:
    """A reconstruction job.

    Attributes:
        seed: Seed of every random choice (same seed, same device: same result).
        max_image_size: Downsample input images so their longer side is at most this (0: keep).
        coarse: The coarse NeRF stage.
        mesh: The mesh stage.
        bake: UV unwrapping and texture baking.
        reference: The posed-image guidance.
    """

    seed: int = 0
    max_image_size: int = 0
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    mesh: MeshStageConfig = field(default_factory=MeshStageConfig)
    bake: BakeConfig = field(default_factory=BakeConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)


def reconstruct_config(preset: str, overrides: dict[str, Any] | None = None) -> ReconstructConfig:
    """The config of ``preset`` with ``overrides`` on top (unknown keys are errors)."""
    return from_dict(ReconstructConfig, preset_overrides(RECONSTRUCT_PRESETS, preset, overrides))


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
        model, _ = train_coarse_reference(cfg.coarse, guidance, bbox, gen,
                                          StageReporter("coarse", cfg.coarse.steps, callback, cancel, every=10))
        timings["coarse"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        geo = train_mesh_reference(cfg.mesh, guidance, model, bbox, gen,
                                   StageReporter("mesh", cfg.mesh.steps, callback, cancel, every=5))
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
        write_result(mesh, out_path, extras)
        if preview is not None:
            write_preview(mesh, preview)
        return {"out": str(out_path), "faces": int(len(mesh.faces)), "vertices": int(len(mesh.verts)),
                "seconds": timings, "bbox": bbox.tolist(), "config": to_dict(cfg)}
