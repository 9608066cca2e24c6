"""The one shading model of every render (coarse volume, mesh stage, previews, the toy prior's training images).

``albedo`` shows the colour flat; ``lambertian`` multiplies it by ``ambient + diffuse * max(0, n . l)``;
``textureless`` shows that light term alone, in grey (DreamFusion's shading augmentation).

:class:`ShadingConfig` is how every stage says it: the mode (or the mix of modes), the light and the background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime.errors import ConfigError

SHADINGS = ("albedo", "lambertian", "textureless")


@dataclass
class LightConfig:
    """The light of the lit shading modes.

    Attributes:
        ambient: Light everywhere, facing the light or not.
        diffuse: Light times ``max(0, n . l)``.
        offset: ``(right, up)`` offset of the light in each camera's frame; ``(0, 0)`` is a headlight, anything else
            a directional light fixed to the camera (:func:`~dreamsmith.core.scene.cameras.camera_light`). The draft
            presets use the light the toy prior was trained with (``presets.TOY_PRIOR_LIGHT``).
        sample: ``"fixed"``: the light ``offset`` gives, every view alike; ``"magic3d"``: for each view a direction
            drawn within ``max_angle`` degrees of the camera's own (seen from the scene centre), uniformly in
            azimuth and in elevation above the plane across the view (Magic3D's light sampling, as threestudio's
            ``light_sample_strategy: magic3d``), as a directional light.
        max_angle: Largest angle between the drawn light and the camera's direction, degrees (``"magic3d"``).
        soft: Draw each view's ambient share ``a`` uniformly in [0, 1] and light it ``a + (1 - a) max(0, n . l)``
            instead of ``ambient``/``diffuse`` (threestudio's ``soft_shading``).
        jitter: Standard deviation of a random perturbation of the fixed light's direction in training renders of
            the volume (0: none).
    """

    ambient: float = 0.35
    diffuse: float = 0.65
    offset: tuple[float, float] = (0.0, 0.0)
    sample: Literal["fixed", "magic3d"] = "fixed"
    max_angle: float = 60.0
    soft: bool = False
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.ambient < 0 or self.diffuse < 0:
            raise ConfigError(f"ambient and diffuse must be >= 0 (got {self.ambient}, {self.diffuse}).")
        if len(self.offset) != 2:
            raise ConfigError(f"offset is (right, up), two numbers (got {self.offset!r}).")
        self.offset = (float(self.offset[0]), float(self.offset[1]))
        if self.sample not in ("fixed", "magic3d"):
            raise ConfigError(f"light.sample must be 'fixed' or 'magic3d' (got {self.sample!r}).")
        if not 0.0 < self.max_angle <= 90.0:
            raise ConfigError(f"light.max_angle must be in (0, 90] degrees (got {self.max_angle}).")

    @property
    def varies(self) -> bool:
        """Whether each view draws its own light (direction or ambient share)."""
        return self.sample != "fixed" or self.soft


BACKGROUNDS = ("white", "black", "random", "learned")
MODES = (*SHADINGS, "mixed")


@dataclass
class ShadingConfig:
    """How a stage's renders are shaded and what they are composited on (the same settings in every stage).

    Attributes:
        mode: ``albedo``, ``lambertian`` or ``textureless`` every step; ``mixed`` draws each step's mode with
            ``lambertian_prob`` / ``textureless_prob`` (else albedo) after ``warmup`` albedo-only steps
            (DreamFusion's shading augmentation; the prior also sees the albedo that the bake exports).
        lambertian_prob: Probability of lambertian shading in ``mixed`` mode.
        textureless_prob: Probability of textureless shading in ``mixed`` mode.
        warmup: Albedo-only steps before ``mixed`` shading starts.
        light: The light of the lit modes.
        background: ``white`` (the toy prior saw white), ``black``, ``random`` (one colour per view) or ``learned``
            (an MLP on the ray direction, trained with the field: the coarse stage only).
    """

    mode: Literal["albedo", "lambertian", "textureless", "mixed"] = "lambertian"
    lambertian_prob: float = 0.5
    textureless_prob: float = 0.2
    warmup: int = 0
    light: LightConfig = field(default_factory=LightConfig)
    background: Literal["white", "black", "random", "learned"] = "white"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"Unknown shading mode {self.mode!r}; choose one of: {', '.join(MODES)}.")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"Unknown background {self.background!r}; choose one of: {', '.join(BACKGROUNDS)}.")
        if min(self.lambertian_prob, self.textureless_prob) < 0 or self.lambertian_prob + self.textureless_prob > 1:
            raise ConfigError(f"lambertian_prob and textureless_prob are probabilities with a sum of at most 1 (got "
                              f"{self.lambertian_prob} and {self.textureless_prob}).")

    def pick(self, step: int, generator: torch.Generator) -> str:
        """The shading mode of ``step`` (draws from ``generator`` only in ``mixed`` mode after the warm-up)."""
        if self.mode != "mixed":
            return self.mode
        if step <= self.warmup:
            return "albedo"
        r = float(torch.rand(1, generator=generator))
        if r < self.textureless_prob:
            return "textureless"
        return "lambertian" if r < self.textureless_prob + self.lambertian_prob else "albedo"


def check_shading(shading: str) -> str:
    """``shading`` when it is one of :data:`SHADINGS`, else a :class:`ConfigError` naming them."""
    if shading not in SHADINGS:
        raise ConfigError(f"Unknown shading {shading!r}; choose one of: {', '.join(SHADINGS)}.")
    return shading


def shade(albedo: Tensor, normals: Tensor | None, light: Tensor | None, shading: str, cfg: LightConfig,
          ambient: Tensor | None = None) -> Tensor:
    """Colours ``[N, 3]`` of surface points with ``albedo [N, 3]``, unit ``normals [N, 3]`` and unit directions
    towards the light ``light [N, 3]`` (both unused for ``albedo``). ``ambient``: optional ``[N, 1]`` ambient shares
    (a soft light, :func:`sample_lights`): ``ambient + (1 - ambient) max(0, n . l)`` instead of ``cfg``'s."""
    if shading == "albedo":
        return albedo
    assert normals is not None and light is not None, "lit shading needs the normals and the light"
    facing = (normals * light).sum(-1, keepdim=True).clamp_min(0.0)  # [N, 1]
    lum = cfg.ambient + cfg.diffuse * facing if ambient is None else ambient + (1.0 - ambient) * facing
    if shading == "lambertian":
        return albedo * lum
    return lum.expand(-1, 3)


def sample_lights(cfg: LightConfig, centers: Tensor, generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    """Each view's light under ``cfg``: directions towards it ``[B, 3]`` (None: the renderer's own, from
    ``offset``) and ambient shares ``[B]`` (None: ``cfg.ambient``/``cfg.diffuse``). ``centers``: ``[B, 3]`` camera
    positions around the scene centre (the origin). Draws from ``generator`` only when the light varies."""
    b = centers.shape[0]
    directions = ambient = None
    if cfg.sample == "magic3d":
        z = F.normalize(centers.float().cpu(), dim=-1)
        x = torch.stack([z[:, 1], -z[:, 0], torch.zeros_like(z[:, 0])], dim=-1)
        x = torch.where(x.norm(dim=-1, keepdim=True) < 1e-6, torch.tensor([1.0, 0.0, 0.0]), x)  # camera overhead
        x = F.normalize(x, dim=-1)
        y = torch.linalg.cross(z, x, dim=-1)
        lowest = math.radians(90.0 - cfg.max_angle)
        el = lowest + (math.pi / 2 - lowest) * torch.rand(b, generator=generator)
        az = (2 * torch.rand(b, generator=generator) - 1) * math.pi
        local = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)
        directions = (local[:, :1] * x + local[:, 1:2] * y + local[:, 2:] * z).to(centers.device)
    if cfg.soft:
        ambient = torch.rand(b, generator=generator).to(centers.device)
    return directions, ambient
