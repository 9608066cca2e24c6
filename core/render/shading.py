"""The one shading model of every render (coarse volume, mesh stage, previews, the toy prior's training images).

``albedo`` shows the colour flat; ``lambertian`` multiplies it by ``ambient + diffuse * max(0, n . l)``;
``textureless`` shows that light term alone, in grey (DreamFusion's shading augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import ConfigError

SHADINGS = ("albedo", "lambertian", "textureless")


@dataclass
class LightConfig:
    """The light of the lit shading modes.

    Attributes:
        ambient: Light everywhere, facing the light or not.
        diffuse: Light times ``max(0, n . l)``.
        offset: ``(right, up)`` offset of the light in each camera's frame; ``(0, 0)`` is a headlight, anything else
            a directional light fixed to the camera (:func:`~dreamsmith.core.cameras.camera_light`). The draft
            presets use the light the toy prior was trained with (``presets.TOY_PRIOR_LIGHT``).
    """

    ambient: float = 0.35
    diffuse: float = 0.65
    offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.ambient < 0 or self.diffuse < 0:
            raise ConfigError(f"ambient and diffuse must be >= 0 (got {self.ambient}, {self.diffuse}).")
        if len(self.offset) != 2:
            raise ConfigError(f"offset is (right, up), two numbers (got {self.offset!r}).")
        self.offset = (float(self.offset[0]), float(self.offset[1]))


def check_shading(shading: str) -> str:
    """``shading`` when it is one of :data:`SHADINGS`, else a :class:`ConfigError` naming them."""
    if shading not in SHADINGS:
        raise ConfigError(f"Unknown shading {shading!r}; choose one of: {', '.join(SHADINGS)}.")
    return shading


def shade(albedo: Tensor, normals: Tensor | None, light: Tensor | None, shading: str, cfg: LightConfig) -> Tensor:
    """Colours ``[N, 3]`` of surface points with ``albedo [N, 3]``, unit ``normals [N, 3]`` and unit directions
    towards the light ``light [N, 3]`` (both unused for ``albedo``)."""
    if shading == "albedo":
        return albedo
    lum = cfg.ambient + cfg.diffuse * (normals * light).sum(-1, keepdim=True).clamp_min(0.0)  # [N, 1]
    if shading == "lambertian":
        return albedo * lum
    return lum.expand(-1, 3)
