"""Volume rendering of a density + albedo field, with empty-space skipping and early ray termination.

A ray is clipped to the field's box, sampled at a fixed step (the box diagonal divided by
``n_samples_per_ray``), and samples in unoccupied cells of an :class:`~.occupancy.OccupancyGrid` are
dropped. The field is evaluated once per block of samples on the packed survivors only, and the
block is composited on a padded ``[rays, block]`` layout (zeros where a sample was dropped):

    alpha_i = 1 - exp(-sigma_i * delta),  T_i = exp(-sum_{j<i} sigma_j * delta),  w_i = alpha_i * T_i
    rgb = sum_i w_i * c_i + (1 - sum_i w_i) * background

Early termination is batched: between blocks, rays whose transmittance fell below
``termination_eps`` are dropped, so samples behind an opaque surface are never evaluated (mode
``"blocks"``). The alternatives ``"prepass"`` (a no-grad density pass over every sample first) and
``"none"`` are kept for benchmarking; see ``VolumeConfig.early_stop``.

Shading is :mod:`.shading`'s (the mode per call; the light and background of a
:class:`~.shading.ShadingConfig`); normals come from ``field.normals`` and are only evaluated when a mode needs them (or
``normals=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...kernels.march import composite, march_samples
from ..runtime.errors import ConfigError, InputError
from ..scene.cameras import Cameras, camera_light
from ..scene.occupancy import OccupancyGrid
from .shading import ShadingConfig, check_shading, shade

EARLY_STOP = ("blocks", "prepass", "none")


@dataclass
class VolumeConfig:
    """Settings of :class:`VolumeRenderer`.

    Attributes:
        n_samples_per_ray: Samples along the box diagonal; the step is ``diagonal / n_samples_per_ray``, so this is
            the most samples any ray gets.
        near_min: Samples closer than this to the ray origin are skipped (cameras inside the box).
        termination_eps: A ray stops once its transmittance falls below this.
        early_stop: How termination is batched: ``"blocks"`` marches ``march_block`` samples at a time and drops
            finished rays between blocks; ``"prepass"`` runs a no-grad density pass over all samples first;
            ``"none"`` evaluates every sample (``scripts/bench.py`` compares them; ``"blocks"`` is the fastest).
        march_block: Samples per block in ``"blocks"`` mode.
        bg_hidden: Hidden width of the learned background MLP.
        bg_freqs: Sine/cosine frequency bands of the learned background's direction encoding.
        chunk_rays: Rays rendered per chunk (bounds memory; gradients flow through all chunks).
        normal_min_weight: Normals (6 density queries each) are evaluated only for samples whose compositing
            weight exceeds this; the others are shaded with the ambient term alone (their weight is negligible).
    """

    n_samples_per_ray: int = 256
    near_min: float = 0.0
    termination_eps: float = 1e-4
    early_stop: Literal["blocks", "prepass", "none"] = "blocks"
    march_block: int = 64
    bg_hidden: int = 32
    bg_freqs: int = 2
    chunk_rays: int = 16384
    normal_min_weight: float = 1e-3

    def __post_init__(self) -> None:
        if self.early_stop not in EARLY_STOP:
            raise ConfigError(f"Unknown early_stop {self.early_stop!r}; choose one of: {', '.join(EARLY_STOP)}.")
        for name in ("n_samples_per_ray", "march_block", "chunk_rays"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer (got {getattr(self, name)}).")
        if not 0.0 < self.termination_eps < 1.0:
            raise ConfigError(f"termination_eps must be in (0, 1) (got {self.termination_eps}); try 1e-4.")
        if not 0.0 <= self.normal_min_weight < 1.0:
            raise ConfigError(f"normal_min_weight is a compositing weight, in [0, 1) (got {self.normal_min_weight}); "
                              f"try 1e-3.")


class BackgroundMLP(nn.Module):
    """A small MLP mapping a unit ray direction ``[N, 3]`` to a background colour ``[N, 3]`` in ``[0, 1]``.

    Args:
        hidden: Hidden width.
        n_freqs: Sine/cosine frequency bands of the direction encoding (0: the raw direction only).
    """

    def __init__(self, hidden: int = 32, n_freqs: int = 2) -> None:
        super().__init__()
        self.n_freqs = n_freqs
        self.net = nn.Sequential(nn.Linear(3 + 6 * n_freqs, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 3))

    def forward(self, d: Tensor) -> Tensor:
        feats = [d]
        for k in range(self.n_freqs):
            feats += [torch.sin((2.0 ** k) * math.pi * d), torch.cos((2.0 ** k) * math.pi * d)]
        return torch.sigmoid(self.net(torch.cat(feats, dim=-1)))


def ray_aabb(rays_o: Tensor, rays_d: Tensor, bbox: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances ``near [R]``, ``far [R]`` of rays ``[R, 3]`` through the box ``bbox [2, 3]``.

    The box is hit in front of the origin where ``far > max(near, 0)``; ``near`` is negative when the origin is
    inside, and both are negative when the box is behind the ray.
    """
    d = torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
    t0 = (bbox[0] - rays_o) / d
    t1 = (bbox[1] - rays_o) / d
    near = torch.minimum(t0, t1).amax(dim=-1)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far


def _rand(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
          generator: torch.Generator | None) -> Tensor:
    """Uniform ``[0, 1)`` numbers on ``device``, drawn from ``generator`` (on its own device) when one is given."""
    if generator is None:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def background_color(shading_cfg: ShadingConfig, rays_d: Tensor, background: BackgroundMLP | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """The configured background ``[R, 3]`` for rays with directions ``rays_d [R, 3]``."""
    kind = shading_cfg.background
    r = rays_d.shape[0]
    if kind == "learned":
        if background is None:
            raise ConfigError("background='learned' needs its BackgroundMLP: render with a VolumeRenderer (which owns "
                              "it) or pass background=..., or choose another background.")
        return background(rays_d)
    if kind == "random":
        return _rand((1, 3), rays_d.device, rays_d.dtype, generator).expand(r, 3)
    value = 1.0 if kind == "white" else 0.0
    return torch.full((r, 3), value, device=rays_d.device, dtype=rays_d.dtype)


def render_rays(field, rays_o: Tensor, rays_d: Tensor, config: VolumeConfig | None = None,
                occupancy: OccupancyGrid | None = None, shading: str = "albedo", light_dir: Tensor | None = None,
                bg_color: Tensor | None = None, perturb: bool = False, normals: bool = False,
                generator: torch.Generator | None = None, background: BackgroundMLP | None = None,
                ambient: Tensor | None = None, shading_cfg: ShadingConfig | None = None) -> dict:
    """Volume-render rays through ``field``.

    Args:
        field: ``field.bbox [2, 3]``, ``field(x [N, 3]) -> (density [N], albedo [N, 3])`` and, for the shaded
            modes, ``field.normals(x [N, 3]) -> [N, 3]``.
        rays_o: ``[R, 3]`` ray origins.
        rays_d: ``[R, 3]`` unit ray directions.
        config: Renderer settings (defaults when ``None``).
        occupancy: Samples in its unoccupied cells are skipped; ``None`` keeps every sample.
        shading: ``"albedo"``, ``"lambertian"`` or ``"textureless"``.
        light_dir: ``[R, 3]`` or ``[3]`` direction towards the light; default: towards the camera (``-rays_d``).
        bg_color: ``[R, 3]`` or ``[3]`` background; default: from ``shading_cfg.background``.
        perturb: Jitter the sample positions (training); off gives a deterministic image.
        normals: Also composite normals (and the orientation loss) in ``"albedo"`` mode.
        generator: Random numbers for the jitter and the random background (any device); ``None``: the global RNG.
        background: The learned background module when ``shading_cfg.background == "learned"``.
        ambient: Optional ``[R]`` ambient shares of a soft light (:func:`~.shading.shade`); None: the config's.
        shading_cfg: The light and background (defaults when ``None``; its mode is not read: ``shading`` is).

    Returns:
        A dict with ``rgb [R, 3]``, ``opacity [R]`` (the sum of weights, for opacity/sparsity losses), ``depth [R]``
        (the weighted mean sample distance, 0 where nothing was hit), ``bg [R, 3]``, and when normals are
        evaluated ``normal [R, 3]`` (weighted sum of unit normals, not renormalised) and ``orientation [R]``
        (the per-ray orientation penalty ``sum_i stopgrad(w_i) * max(0, n_i . d)^2``); plus the plain ints
        ``n_samples`` (differentiable field evaluations) and ``n_prepass`` (no-grad density evaluations).
    """
    config = config or VolumeConfig()
    shading_cfg = shading_cfg or ShadingConfig()
    check_shading(shading)
    if rays_o.dim() != 2 or rays_o.shape[-1] != 3 or rays_o.shape != rays_d.shape:
        raise InputError(f"render expects rays_o and rays_d of shape [R, 3] (got {tuple(rays_o.shape)} and "
                         f"{tuple(rays_d.shape)}); flatten image rays first or use render_image.")
    r = rays_o.shape[0]
    if bg_color is None:
        bg_color = background_color(shading_cfg, rays_d, background, generator)
    bg_color = bg_color.to(rays_o).expand(r, 3)
    want_normals = normals or shading != "albedo"
    if want_normals:
        light_dir = -rays_d if light_dir is None else F.normalize(light_dir.to(rays_o), dim=-1).expand(r, 3)
    chunks = []
    for s in range(0, r, config.chunk_rays):
        sl = slice(s, s + config.chunk_rays)
        chunks.append(_render_chunk(config, shading_cfg, field, rays_o[sl], rays_d[sl], occupancy, shading,
                                    light_dir[sl] if want_normals and light_dir is not None else None, bg_color[sl],
                                    perturb, want_normals,
                                    generator, None if ambient is None else ambient[sl]))
    if len(chunks) == 1:
        return chunks[0]
    out = {}
    for key, value in chunks[0].items():
        out[key] = sum(c[key] for c in chunks) if isinstance(value, int) else torch.cat([c[key] for c in chunks])
    return out


def _render_chunk(cfg: VolumeConfig, shading_cfg: ShadingConfig, field, rays_o: Tensor, rays_d: Tensor,
                  occupancy: OccupancyGrid | None, shading: str, light: Tensor | None, bg: Tensor, perturb: bool,
                  want_normals: bool, generator: torch.Generator | None, ambient: Tensor | None = None) -> dict:
    """Render one chunk of rays (see :func:`render_rays`)."""
    r, dev, dt = rays_o.shape[0], rays_o.device, rays_o.dtype
    bbox = field.bbox.to(rays_o)
    near, far = ray_aabb(rays_o, rays_d, bbox)
    near = near.clamp_min(cfg.near_min)
    hit = (far > near).nonzero().squeeze(1)  # [Rh]
    o, d, near, far = rays_o[hit], rays_d[hit], near[hit], far[hit]
    light = light[hit] if light is not None else None
    ambient = ambient[hit].to(dt)[:, None] if ambient is not None else None
    rh, n_s = hit.numel(), cfg.n_samples_per_ray
    step = float((bbox[1] - bbox[0]).norm()) / n_s

    # Packed samples (ray-major, increasing t) in the box and in occupied cells.
    u = _rand((rh, n_s), dev, dt, generator) if perturb else None
    ray, k, t, x = march_samples(o, d, near, far, u, step, n_s, occupancy.mask if occupancy is not None else None,
                                 occupancy.bbox if occupancy is not None else bbox)

    n_prepass = 0
    block = cfg.march_block if cfg.early_stop == "blocks" else n_s
    if cfg.early_stop == "prepass" and ray.numel() > 0:
        with torch.no_grad():
            tau = field.density(x).to(torch.float64) * step
            n_prepass = ray.numel()
            _, inverse, counts = torch.unique_consecutive(ray, return_inverse=True, return_counts=True)
            before = tau.cumsum(0) - tau  # optical depth before each sample, then per ray
            before = before - before[torch.cumsum(counts, 0) - counts][inverse]
            keep = before < -math.log(cfg.termination_eps)
            ray, k, t, x = ray[keep], k[keep], t[keep], x[keep]

    acc = torch.zeros(rh, device=dev, dtype=dt)  # optical depth accumulated so far
    rgb = torch.zeros(rh, 3, device=dev, dtype=dt)
    wt = torch.zeros(rh, device=dev, dtype=dt)  # sum of w * t
    nrm = torch.zeros(rh, 3, device=dev, dtype=dt) if want_normals else None
    orient = torch.zeros(rh, device=dev, dtype=dt) if want_normals else None
    active = torch.ones(rh, dtype=torch.bool, device=dev)
    stop_depth = -math.log(cfg.termination_eps)
    n_eval = 0
    for b0 in range(0, n_s, block):
        in_block = (k >= b0) & (k < b0 + block) if block < n_s else torch.ones_like(k, dtype=torch.bool)
        sel = (in_block & active[ray]).nonzero().squeeze(1)  # packed samples of this block on live rays
        if sel.numel() == 0:
            if not bool(active.any()):
                break
            continue
        xs, ts, ray_of = x[sel], t[sel], ray[sel]
        sigma, albedo = field(xs)
        sigma, albedo = sigma.to(dt), albedo.to(dt)
        n_eval += xs.shape[0]
        w, acc = composite(sigma * step, ray_of, acc)
        n = None
        if want_normals:
            # Normals cost 6 density queries each: only evaluate them where the sample is visible at all.
            nsel = (w.detach() > cfg.normal_min_weight).nonzero().squeeze(1)
            n = torch.zeros_like(xs)
            if nsel.numel() > 0:
                n = n.index_put((nsel,), field.normals(xs[nsel]).to(dt))
        c = shade(albedo, n, light[ray_of] if want_normals and light is not None else None, shading, shading_cfg.light,
                  None if ambient is None else ambient[ray_of])
        rgb = rgb.index_add(0, ray_of, w[:, None] * c)
        wt = wt.index_add(0, ray_of, w * ts)
        if want_normals:
            assert n is not None and nrm is not None and orient is not None
            nrm = nrm.index_add(0, ray_of, w[:, None] * n)
            facing = (n * d[ray_of]).sum(-1).clamp_min(0.0)
            orient = orient.index_add(0, ray_of, w.detach() * facing.square())
        active = acc.detach() < stop_depth

    opac = 1.0 - torch.exp(-acc)
    out = {
        "rgb": _scatter_rows(rgb + (1.0 - opac)[:, None] * bg[hit], hit, bg),
        "opacity": _scatter_rows(opac, hit, torch.zeros(r, device=dev, dtype=dt)),
        "depth": _scatter_rows(wt / opac.clamp_min(1e-6), hit, torch.zeros(r, device=dev, dtype=dt)),
        "bg": bg,
        "n_samples": n_eval,
        "n_prepass": n_prepass,
    }
    if want_normals:
        assert nrm is not None and orient is not None
        out["normal"] = _scatter_rows(nrm, hit, torch.zeros(r, 3, device=dev, dtype=dt))
        out["orientation"] = _scatter_rows(orient, hit, torch.zeros(r, device=dev, dtype=dt))
    return out

def render_image(field, cameras: Cameras, config: VolumeConfig | None = None, occupancy: OccupancyGrid | None = None,
                 shading: str = "albedo", light_dir: Tensor | None = None, bg_color: Tensor | None = None,
                 perturb: bool = False, normals: bool = False, generator: torch.Generator | None = None,
                 background: BackgroundMLP | None = None, offsets: Tensor | None = None,
                 ambient: Tensor | None = None, shading_cfg: ShadingConfig | None = None) -> dict:
    """Render every pixel of a batch of ``B`` cameras (in chunks of ``config.chunk_rays`` rays).

    Args:
        field: As in :func:`render_rays`.
        cameras: The cameras; moved to the field's device.
        config: Renderer settings (defaults when ``None``).
        occupancy: As in :func:`render_rays`.
        shading: As in :func:`render_rays`.
        light_dir: ``[B, 3]`` or ``[3]`` direction towards the light; default: from the box centre towards each
            camera, perturbed by ``shading_cfg.light.jitter`` when ``perturb`` is on.
        bg_color: ``[B, 3]`` or ``[3]`` background colour; default from ``shading_cfg.background`` (``"random"``
            draws one colour per camera).
        perturb: Jitter samples (and the default light) for training.
        normals: As in :func:`render_rays`.
        generator: As in :func:`render_rays`.
        background: As in :func:`render_rays`.
        offsets: Optional ``[B, H, W, 2]`` shifts of the rays from the pixel centres, in pixels
            (:meth:`~dreamsmith.core.scene.cameras.Cameras.rays`).
        ambient: Optional ``[B]`` ambient shares of each camera's soft light (:func:`~.shading.sample_lights`).
        shading_cfg: As in :func:`render_rays`.

    Returns:
        The dict of :func:`render_rays` with images ``[B, H, W, C]`` (``opacity`` and ``depth`` have ``C = 1``) and the
        summed sample counts.
    """
    config = config or VolumeConfig()
    shading_cfg = shading_cfg or ShadingConfig()
    light = shading_cfg.light
    dev = field.bbox.device
    cams = cameras.to(dev)
    b, h, w = len(cams), cams.height, cams.width
    o, d = cams.rays(offsets)  # [B, H, W, 3]
    if shading != "albedo":
        if light_dir is None:
            if any(light.offset):
                light_dir = camera_light(cams, light.offset)
            else:
                centre = field.bbox.to(cams.c2w).mean(dim=0)
                light_dir = cams.centers - centre  # [B, 3]
            if perturb and light.jitter > 0:
                light_dir = F.normalize(light_dir, dim=-1) + light.jitter * _randn_like(light_dir, generator)
        light_dir = F.normalize(light_dir.to(o).expand(b, 3), dim=-1)
        light_dir = light_dir[:, None, None].expand(b, h, w, 3).reshape(-1, 3)
    if bg_color is None and shading_cfg.background == "random":
        bg_color = _rand((b, 3), dev, o.dtype, generator)
    if bg_color is not None:
        bg_color = bg_color.to(o).expand(b, 3)[:, None, None].expand(b, h, w, 3).reshape(-1, 3)
    if ambient is not None:
        ambient = ambient.to(o)[:, None].expand(b, h * w).reshape(-1)
    out = render_rays(field, o.reshape(-1, 3), d.reshape(-1, 3), config, occupancy, shading, light_dir, bg_color,
                      perturb, normals, generator, background, ambient, shading_cfg)
    return {k: v if isinstance(v, int) else v.reshape(b, h, w, -1) for k, v in out.items()}


class VolumeRenderer(nn.Module):
    """The renderer as a module: holds its settings and, when ``shading.background == "learned"``, the background
    MLP (so an optimiser over ``renderer.parameters()`` trains it).

    Args:
        config: Renderer settings.
        shading: The light and background of its renders (the stage's; the mode is chosen per call).
    """

    def __init__(self, config: VolumeConfig | None = None, shading: ShadingConfig | None = None) -> None:
        super().__init__()
        self.config = config or VolumeConfig()
        self.shading = shading or ShadingConfig()
        cfg = self.config
        self.background = (BackgroundMLP(cfg.bg_hidden, cfg.bg_freqs) if self.shading.background == "learned"
                           else None)

    def render(self, field, rays_o: Tensor, rays_d: Tensor, occupancy: OccupancyGrid | None = None,
               shading: str = "albedo", light_dir: Tensor | None = None, bg_color: Tensor | None = None,
               perturb: bool = False, normals: bool = False, generator: torch.Generator | None = None) -> dict:
        """:func:`render_rays` with this renderer's config and background."""
        return render_rays(field, rays_o, rays_d, self.config, occupancy, shading, light_dir, bg_color, perturb,
                           normals, generator, self.background, shading_cfg=self.shading)

    def render_image(self, field, cameras: Cameras, occupancy: OccupancyGrid | None = None, shading: str = "albedo",
                     light_dir: Tensor | None = None, bg_color: Tensor | None = None, perturb: bool = False,
                     normals: bool = False, generator: torch.Generator | None = None,
                     offsets: Tensor | None = None, ambient: Tensor | None = None) -> dict:
        """:func:`render_image` with this renderer's config and background."""
        return render_image(field, cameras, self.config, occupancy, shading, light_dir, bg_color, perturb, normals,
                            generator, self.background, offsets, ambient, self.shading)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal numbers shaped like ``x``, drawn from ``generator`` when one is given."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _scatter_rows(values: Tensor, rows: Tensor, base: Tensor) -> Tensor:
    """``base`` with ``base[rows] = values`` (out of place, differentiable in both)."""
    return base.index_copy(0, rows, values.to(base.dtype))
