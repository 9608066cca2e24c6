"""A coarse-stage cache for the sweeps: experiments on the mesh stage reuse each job's coarse field.

Inside ``with coarse_cache(folder) as cache:`` every coarse stage the pipeline trains is saved under ``folder``
(safetensors: the field, the occupancy grid, the renderer's background and the job's generator state after the
stage), keyed by ``cache.label`` (the sweep sets it to the prompt or picture before each job), the coarse config,
the objective's and its guidance's configs (views, shading, guidance scale; a picture's, and those of its other
views), the generator's state before the stage and an edit's starting shape. A later run with the same key loads
them instead of training: the mesh stage then starts from the same field with the same random numbers, so two
mesh-stage settings are compared on the same coarse stages. A change of the coarse code is not part of the key:
clear the folder after one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dreamsmith.core.jobs import pipeline
from dreamsmith.core.render.volume import VolumeRenderer
from dreamsmith.core.scene.field import NeRFField
from dreamsmith.core.scene.occupancy import OccupancyGrid

_PARTS = ("field", "occupancy", "renderer")


@dataclass
class CoarseCache:
    """Where the coarse stages are kept, the current job's label, and how many were loaded and trained."""

    folder: Path | None
    label: str = ""
    loaded: int = 0
    trained: int = 0

    def key(self, cfg: object, objective: object, generator: torch.Generator,
            density_prior: torch.Tensor | None) -> str:
        parts = [objective, getattr(objective, "novel", None)]  # a picture's objective holds the other views' too
        settings = [getattr(o, "cfg", None) for o in parts] + [getattr(getattr(o, "guidance", None), "cfg", None)
                                                                for o in parts]
        digest = hashlib.sha256(f"{self.label}\n{cfg!r}\n{settings!r}\n".encode())
        digest.update(generator.get_state().numpy().tobytes())
        if density_prior is not None:  # an edit's starting shape
            digest.update(density_prior.detach().cpu().float().numpy().tobytes())
        return digest.hexdigest()[:24]


@contextmanager
def coarse_cache(folder: str | Path | None) -> Iterator[CoarseCache]:
    """Patch the pipeline's coarse stage with a cache in ``folder`` for the duration of the block (no folder: no
    cache, every stage trains; the label is then unused)."""
    if not folder:
        yield CoarseCache(None)
        return
    root = Path(folder)
    cache = CoarseCache(root)
    root.mkdir(parents=True, exist_ok=True)
    train = pipeline.train_coarse

    def cached(cfg, objective, bbox, device, generator, reporter, preview_fn=None, density_prior=None):
        path = root / f"{cache.key(cfg, objective, generator, density_prior)}.safetensors"
        if path.exists():
            tensors = load_file(str(path))
            made = (NeRFField(cfg.field, bbox.to(device)), OccupancyGrid(cfg.occupancy, bbox.to(device)),
                    VolumeRenderer(cfg.volume, objective.shading))
            if density_prior is not None:
                made[0].set_density_prior(density_prior)
            for name, module in zip(_PARTS, made, strict=True):
                part = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(name + ".")}
                module.load_state_dict(part)
                module.to(device)
            generator.set_state(tensors["generator"])
            cache.loaded += 1
            return made
        made = train(cfg, objective, bbox, device, generator, reporter, preview_fn=preview_fn,
                     density_prior=density_prior)
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
                   for name, module in zip(_PARTS, made, strict=True) for k, v in module.state_dict().items()}
        tensors["generator"] = generator.get_state()
        tmp = path.with_suffix(".part")
        save_file(tensors, str(tmp))
        tmp.replace(path)
        cache.trained += 1
        return made

    pipeline.train_coarse = cached
    try:
        yield cache
    finally:
        pipeline.train_coarse = train
