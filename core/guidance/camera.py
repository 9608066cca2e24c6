"""Camera conditioning for priors that take the view as an input, as MVDream-style models do.

A text-to-image model knows the view only from words (", side view"), which cover 90 degrees of azimuth each: as
much as a cube's own symmetry, so under such a prior score distillation cannot tell which way a cube's corners
point and averages them away. A prior trained with the camera as an input (the committed toy prior;
``scripts/train_toy_prior.py --camera-features`` makes one) is told the azimuth and elevation of every render:
its UNet has a ``"projection"`` class embedding (diffusers), fed the features below as ``class_labels``, and its
``model_index.json`` names the features in ``dreamsmith_camera_features``.

Angles follow :func:`dreamsmith.core.scene.cameras.orbit_cameras`: azimuth 0 = the front (camera on the -Y side),
counter-clockwise seen from above; elevation above the XY plane.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Feature sets a prior may name in ``model_index.json`` (``dreamsmith_camera_features``), with their widths.
CAMERA_FEATURES = {"azimuth_elevation_fourier": 10}
_HARMONICS = 4


def camera_features(azimuth_deg: Tensor, elevation_deg: Tensor, kind: str = "azimuth_elevation_fourier") -> Tensor:
    """``[B, F]`` float32 features of ``[B]`` camera angles (degrees).

    ``azimuth_elevation_fourier``: ``cos(k az), sin(k az)`` for ``k = 1..4``, then ``cos(el), sin(el)``: smooth,
    periodic in the azimuth, and able to tell views apart that differ by less than a quarter turn.
    """
    if kind not in CAMERA_FEATURES:
        raise ValueError(f"unknown camera features {kind!r}; known: {', '.join(CAMERA_FEATURES)}")
    az = torch.deg2rad(azimuth_deg.double())
    el = torch.deg2rad(elevation_deg.double().to(az.device))
    k = torch.arange(1, _HARMONICS + 1, dtype=torch.float64, device=az.device)
    ang = az[:, None] * k[None, :]  # [B, K]
    parts = [torch.stack([ang.cos(), ang.sin()], dim=-1).flatten(1), torch.stack([el.cos(), el.sin()], dim=-1)]
    return torch.cat(parts, dim=1).float()


def mirrored_azimuth(azimuth_deg: Tensor) -> Tensor:
    """The azimuth from which a left-right mirrored image of an object symmetric about X = 0 was seen."""
    return torch.remainder(-azimuth_deg, 360.0)


def unet_camera_inputs(unet, azimuth_deg: Tensor, elevation_deg: Tensor) -> dict:
    """Keyword arguments for calling a bare diffusers ``unet`` (scripts, tests) on ``[B]`` cameras: its
    ``class_labels`` when it has the camera embedding, nothing when it has none."""
    if unet.config.class_embed_type is None:
        return {}
    return {"class_labels": camera_features(azimuth_deg, elevation_deg)}
