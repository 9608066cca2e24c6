"""Random training views for score distillation: cameras on a sphere around the scene, with their angles."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .cameras import Cameras, orbit_cameras


@dataclass
class ViewSamplerConfig:
    """Where SDS cameras are drawn from (defaults match the toy prior's training renders).

    Attributes:
        distance_min: Smallest camera distance from the scene centre (world units).
        distance_max: Largest camera distance.
        fov_min: Smallest vertical field of view, degrees.
        fov_max: Largest vertical field of view, degrees.
        elevation_min: Lowest elevation above the XY plane, degrees.
        elevation_max: Highest elevation, degrees.
        views_per_step: Cameras per optimisation step.
    """

    distance_min: float = 2.0
    distance_max: float = 2.0
    fov_min: float = 40.0
    fov_max: float = 40.0
    elevation_min: float = -10.0
    elevation_max: float = 60.0
    views_per_step: int = 4


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def sample_views(cfg: ViewSamplerConfig, size: int, generator: torch.Generator,
                 n: int | None = None) -> tuple[Cameras, Tensor, Tensor]:
    """Draw ``n`` cameras (default ``views_per_step``) looking at the origin.

    Returns:
        The cameras (square images of ``size`` pixels), azimuth ``[n]`` and elevation ``[n]`` in degrees
        (azimuth 0 = front, the -Y side).
    """
    n = n or cfg.views_per_step
    # Stratified azimuths: one per equal sector, jittered, so every step sees the object from all around.
    az = (torch.arange(n, dtype=torch.float32) + torch.rand(n, generator=generator)) * (360.0 / n)
    az = (az + 360.0 * torch.rand(1, generator=generator)) % 360.0
    el = _uniform(cfg.elevation_min, cfg.elevation_max, n, generator)
    dist = _uniform(cfg.distance_min, cfg.distance_max, n, generator)
    fov = float(_uniform(cfg.fov_min, cfg.fov_max, 1, generator))
    return orbit_cameras(az, el, dist, fov, size), az, el
