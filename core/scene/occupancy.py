"""An occupancy grid over the scene box that lets the volume renderer skip empty space.

The grid keeps, per cell, a running estimate of the field's density (an exponential moving average
that takes the max with fresh samples, as in instant-ngp) and a boolean mask of the cells that may
hold something. The renderer drops every ray sample that falls in an unoccupied cell, so the field
is evaluated only where it matters.

The threshold is expressed as an *opacity*, not a raw density: a cell is occupied when a ray
crossing one cell length of it would become at least ``threshold`` opaque. That keeps the meaning of
the number the same whatever the grid resolution or the scene scale. Early in training the whole
field may be faint, so the density threshold is also capped by the grid's mean density (never
culling everything at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..runtime.errors import ConfigError


@dataclass
class OccupancyConfig:
    """Settings of :class:`OccupancyGrid`.

    Attributes:
        resolution: Cells per side of the cubic grid (64 or 128 are typical).
        update_every: Refresh the grid every this many optimisation steps.
        ema_decay: Per-update decay of the stored densities before taking the max with fresh samples.
        threshold: Opacity a ray would accumulate over one cell length at the threshold density; cells
            whose stored density gives less are unoccupied. 0.01 is instant-ngp's choice.
        warmup_steps: Until this step every cell is re-sampled at each update; afterwards a random quarter of
            all cells plus as many occupied cells are re-sampled, which bounds the cost.
        chunk: Points per field evaluation during an update (bounds memory).
    """

    resolution: int = 64
    update_every: int = 16
    ema_decay: float = 0.95
    threshold: float = 0.01
    warmup_steps: int = 256
    chunk: int = 1 << 18

    def __post_init__(self) -> None:
        if self.resolution < 2:
            raise ConfigError(f"occupancy resolution must be at least 2 (got {self.resolution}); use 64 or 128.")
        if self.update_every < 1:
            raise ConfigError(f"occupancy update_every must be at least 1 (got {self.update_every}).")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"occupancy ema_decay must be in [0, 1) (got {self.ema_decay}); 0.95 is typical.")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"occupancy threshold is an opacity in (0, 1) (got {self.threshold}); try 0.01.")


class OccupancyGrid(nn.Module):
    """A ``[R, R, R]`` density estimate and occupancy mask over an axis-aligned box (buffers only).

    Cell ``(i, j, k)`` covers ``bbox[0] + ([i, j, k] + [0, 1]) * cell_size`` (index order x, y, z).
    A new grid is fully occupied, so rendering before the first update sees everything.

    Args:
        config: Grid settings (``None``: defaults).
        bbox: ``[2, 3]`` box min and max in world units (usually ``field.bbox``).
    """

    density: Tensor  # [R, R, R] EMA of the field density
    mask: Tensor  # [R, R, R] bool, occupied cells
    bbox: Tensor  # [2, 3]

    def __init__(self, config: OccupancyConfig | None, bbox: Tensor) -> None:
        super().__init__()
        self.config = config or OccupancyConfig()
        bbox = torch.as_tensor(bbox, dtype=torch.float32).detach().clone()
        if bbox.shape != (2, 3) or not bool((bbox[1] > bbox[0]).all()):
            raise ConfigError(f"The scene box must be [2, 3] with max > min on every axis (got {bbox.tolist()}).")
        r = self.config.resolution
        self.register_buffer("bbox", bbox)
        self.register_buffer("density", torch.zeros(r, r, r, device=bbox.device))
        self.register_buffer("mask", torch.ones(r, r, r, dtype=torch.bool, device=bbox.device))

    @classmethod
    def from_density_grid(cls, density: Tensor, bbox: Tensor, config: OccupancyConfig | None = None) -> OccupancyGrid:
        """A grid initialised from densities already sampled at the cell centres.

        Args:
            density: ``[R, R, R]`` densities (x, y, z index order); ``R`` overrides ``config.resolution``.
            bbox: ``[2, 3]`` box the densities cover.
            config: Grid settings.
        """
        if density.dim() != 3 or len(set(density.shape)) != 1:
            raise ConfigError(f"from_density_grid needs a cubic [R, R, R] density grid (got {tuple(density.shape)}).")
        base = config or OccupancyConfig()
        cfg = OccupancyConfig(**{**base.__dict__, "resolution": int(density.shape[0])})
        grid = cls(cfg, torch.as_tensor(bbox).to(density.device))
        grid.density.copy_(density.detach().float().clamp_min(0.0))
        grid._refresh_mask()
        return grid

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def cell_size(self) -> Tensor:
        """``[3]`` edge lengths of one cell."""
        return (self.bbox[1] - self.bbox[0]) / self.resolution

    @property
    def occupied_fraction(self) -> float:
        """Fraction of cells marked occupied (1.0 for a new grid)."""
        return float(self.mask.float().mean())

    def density_threshold(self) -> float:
        """The density below which a cell is unoccupied (see the module docstring)."""
        length = float(self.cell_size.max())
        thr = -math.log1p(-self.config.threshold) / length
        return min(thr, float(self.density.mean()))

    def _refresh_mask(self) -> None:
        self.mask.copy_(self.density > self.density_threshold())

    def cell_centers(self, indices: Tensor, jitter: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """World positions ``[N, 3]`` inside cells given by flat ``indices [N]`` (centres, or uniform random)."""
        r = self.resolution
        ijk = torch.stack([indices // (r * r), (indices // r) % r, indices % r], dim=-1).to(self.bbox.dtype)
        if not jitter:
            offset = torch.full_like(ijk, 0.5)
        elif generator is None:
            offset = torch.rand_like(ijk)
        else:
            offset = torch.rand(ijk.shape, generator=generator, device=generator.device).to(ijk)
        return self.bbox[0] + (ijk + offset) * self.cell_size

    def _cells_to_update(self, step: int, generator: torch.Generator | None) -> Tensor:
        n_cells = self.resolution ** 3
        dev = self.density.device
        if step < self.config.warmup_steps:
            return torch.arange(n_cells, device=dev)
        n = max(n_cells // 4, 1)
        gdev = generator.device if generator is not None else dev
        uniform = torch.randint(0, n_cells, (n,), device=gdev, generator=generator).to(dev)
        occupied = self.mask.flatten().nonzero().squeeze(1)
        if occupied.numel() > 0:
            occupied = occupied[torch.randint(0, occupied.numel(), (n,), device=gdev, generator=generator).to(dev)]
        return torch.cat([uniform, occupied]).unique()

    @torch.no_grad()
    def update(self, field, step: int, force: bool = False, generator: torch.Generator | None = None) -> bool:
        """Refresh the grid from ``field`` when ``step`` is a multiple of ``update_every`` (or ``force``).

        Each selected cell gets one density sample at a random point inside it; its stored value becomes
        ``max(ema_decay * old, new)`` and the mask is recomputed for all cells (unselected cells decay too).

        Args:
            field: Anything with ``density(x [N, 3]) -> [N]``.
            step: The optimisation step (0-based).
            force: Update regardless of ``step``.
            generator: Random numbers for the cell choice and jitter (any device); ``None``: the global RNG.

        Returns:
            Whether the grid was updated.
        """
        if not force and step % self.config.update_every != 0:
            return False
        cells = self._cells_to_update(step, generator)
        fresh = torch.empty(cells.numel(), device=self.density.device)
        for s in range(0, cells.numel(), self.config.chunk):
            idx = cells[s:s + self.config.chunk]
            x = self.cell_centers(idx, jitter=True, generator=generator)
            fresh[s:s + idx.numel()] = field.density(x).detach().float().reshape(-1).to(fresh.device)
        flat = self.density.view(-1)
        flat.mul_(self.config.ema_decay)
        flat[cells] = torch.maximum(flat[cells], torch.nan_to_num(fresh, nan=0.0).clamp_min(0.0))
        self._refresh_mask()
        return True

    def is_occupied(self, x: Tensor) -> Tensor:
        """Whether points ``x [..., 3]`` fall in occupied cells; points outside the box are not. Returns ``[...]``."""
        r = self.resolution
        u = (x - self.bbox[0].to(x)) / (self.bbox[1] - self.bbox[0]).to(x)  # [..., 3] in [0, 1] inside the box
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        ijk = (u * r).long().clamp(0, r - 1)
        flat = (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]
        return inside & self.mask.view(-1)[flat]
