"""The coarse stage's NeRF field: a multiresolution hash-grid encoding with small MLP heads.

World points are mapped into the scene box: ``u = (x - min) / (max - min)`` in ``[0, 1]^3`` feeds the hash
grid, and ``p = 2 u - 1`` in ``[-1, 1]^3`` (box-normalised coordinates, units of the box half-size per
axis) shapes the initial density blob. Points outside the box have zero density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...kernels import hashgrid
from ...kernels.errors import KernelUnavailable
from ...kernels.hashgrid import hash_grid_backend
from ..runtime.errors import ConfigError, InputError, ResourceError


@dataclass
class HashGridConfig:
    """The multiresolution hash-grid encoding.

    Attributes:
        n_levels: Number of resolution levels ``L``.
        n_features_per_level: Features stored per grid vertex and level ``F`` (output width is ``L * F``).
        log2_hashmap_size: Base-2 log of the table rows per level ``T``; a level whose ``(R + 1)^3`` vertices
            fit is stored densely, finer levels are hashed.
        base_resolution: Cells per box axis of the coarsest level.
        finest_resolution: Cells per box axis of the finest level; level ``l`` has
            ``round(base * b**l)`` cells with ``b = exp((ln finest - ln base) / (L - 1))``.
        init_scale: Table entries start uniform in ``[-init_scale, init_scale]`` (reference backend).
        backend: ``reference`` (pure PyTorch, any device), ``tcnn`` (tiny-cuda-nn, CUDA only; its own
            parameter layout, so weights do not transfer between backends) or ``auto`` (``tcnn`` when it is
            importable and CUDA is available, else ``reference``; ``DREAMSMITH_KERNELS=reference`` forces it).
    """

    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    finest_resolution: int = 2048
    init_scale: float = 1e-4
    backend: Literal["auto", "reference", "tcnn"] = "auto"

    def __post_init__(self) -> None:
        if self.n_levels < 1 or self.n_features_per_level < 1:
            raise ConfigError("grid.n_levels and grid.n_features_per_level must be at least 1.")
        if not 1 <= self.log2_hashmap_size <= 30:
            raise ConfigError(f"grid.log2_hashmap_size must be in 1..30, got {self.log2_hashmap_size}.")
        if not 1 <= self.base_resolution <= self.finest_resolution:
            raise ConfigError("grid.base_resolution must be at least 1 and at most grid.finest_resolution "
                              f"(got {self.base_resolution} and {self.finest_resolution}).")
        if self.init_scale < 0:
            raise ConfigError(f"grid.init_scale must be non-negative, got {self.init_scale}.")
        if self.backend not in ("auto", "reference", "tcnn"):
            raise ConfigError(f"grid.backend must be 'auto', 'reference' or 'tcnn', got {self.backend!r}.")

    @property
    def per_level_scale(self) -> float:
        """The growth factor ``b`` between consecutive levels."""
        if self.n_levels == 1:
            return 1.0
        return math.exp((math.log(self.finest_resolution) - math.log(self.base_resolution)) / (self.n_levels - 1))


class HashGridEncoding(nn.Module):
    """Encodes points in ``[0, 1]^3`` to ``[N, L * F]`` features (see :mod:`dreamsmith.kernels.hashgrid`)."""

    def __init__(self, cfg: HashGridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # A plain CPU tensor, not a buffer: the kernel reads it on the host, so it never costs a device sync.
        self.resolutions = hashgrid.level_resolutions(cfg.n_levels, cfg.base_resolution, cfg.finest_resolution)
        self.backend = hash_grid_backend(cfg.backend)
        if self.backend == "tcnn":
            try:
                self.tcnn = hashgrid.tcnn_encoding(cfg.n_levels, cfg.n_features_per_level, cfg.log2_hashmap_size,
                                                   cfg.base_resolution, cfg.per_level_scale)
            except KernelUnavailable as exc:
                raise ResourceError(str(exc)) from None
        else:
            shape = (cfg.n_levels, 2**cfg.log2_hashmap_size, cfg.n_features_per_level)
            self.table = nn.Parameter(torch.empty(shape).uniform_(-cfg.init_scale, cfg.init_scale))

    @property
    def output_dim(self) -> int:
        """Features per point: ``n_levels * n_features_per_level``."""
        return self.cfg.n_levels * self.cfg.n_features_per_level

    def forward(self, x: Tensor) -> Tensor:
        """Features ``[N, L * F]`` of points ``x [N, 3]`` in ``[0, 1]`` (clamped)."""
        if self.backend == "tcnn":
            return self.tcnn(x.clamp(0.0, 1.0).float().contiguous()).float()
        return hashgrid.hash_encode(x, self.table, self.resolutions, self.cfg.log2_hashmap_size)


@dataclass
class FieldConfig:
    """The NeRF field: encoding, MLP heads and the initial density.

    Attributes:
        grid: The hash-grid encoding.
        hidden_dim: Width of the hidden layers of both heads.
        n_hidden_layers: Hidden layers per head (0: one linear layer on the encoding).
        density_activation: ``softplus``: ``softplus(raw + density_shift)`` (smooth, gradients everywhere);
            ``exp``: ``exp(raw + density_shift)`` with the exponent clamped at 15.
        density_shift: Added to the raw density before the activation (-1 as in "shifted softplus": empty
            space starts faint rather than at ``softplus(0) = 0.69``).
        density_bias: ``blob``: add ``blob_density * (1 - |p| / blob_radius)`` to the raw density, where ``p``
            are box-normalised coordinates (``[-1, 1]`` along each axis, the box centre at 0), so the field
            starts as a soft ball at the box centre; ``none``: no bias.
        blob_density: Raw density added at the box centre by the blob.
        blob_radius: Where the blob's bias crosses zero, in units of the box half-size (0.5: halfway from the
            centre to each face; a sphere for a cubic box, an ellipsoid otherwise).
        albedo_activation: Activation of the albedo head (``sigmoid``: colours in ``(0, 1)``).
        normal_type: ``finite_difference``: central differences of the density (6 extra density queries per
            point); ``analytic``: autograd through the encoding (the pure-PyTorch reference path; heavier).
        fd_eps: Finite-difference step in box-normalised units (a fraction of the box half-size per axis).
    """

    grid: HashGridConfig = field(default_factory=HashGridConfig)
    hidden_dim: int = 64
    n_hidden_layers: int = 1
    density_activation: Literal["softplus", "exp"] = "softplus"
    density_shift: float = -1.0
    density_bias: Literal["blob", "none"] = "blob"
    blob_density: float = 10.0
    blob_radius: float = 0.5
    albedo_activation: Literal["sigmoid"] = "sigmoid"
    normal_type: Literal["finite_difference", "analytic"] = "finite_difference"
    fd_eps: float = 1e-2

    def __post_init__(self) -> None:
        choices = {"density_activation": ("softplus", "exp"), "density_bias": ("blob", "none"),
                   "albedo_activation": ("sigmoid",), "normal_type": ("finite_difference", "analytic")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"field.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}.")
        if self.hidden_dim < 1 or self.n_hidden_layers < 0:
            raise ConfigError("field.hidden_dim must be at least 1 and field.n_hidden_layers at least 0.")
        if self.blob_radius <= 0 or self.fd_eps <= 0:
            raise ConfigError("field.blob_radius and field.fd_eps must be positive.")


def _mlp(in_dim: int, hidden: int, n_hidden: int, out_dim: int) -> nn.Sequential:
    """``n_hidden`` ReLU layers of width ``hidden``, then a linear output layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def _check_bbox(bbox: Tensor) -> Tensor:
    bbox = torch.as_tensor(bbox, dtype=torch.float32)
    if bbox.shape != (2, 3) or not bool(torch.isfinite(bbox).all()) or not bool((bbox[1] > bbox[0]).all()):
        raise InputError(f"The scene box must be a [2, 3] tensor (min corner, max corner) with max > min on every "
                         f"axis; got {bbox.tolist() if bbox.numel() <= 6 else list(bbox.shape)}.")
    return bbox


class NeRFField(nn.Module):
    """Density and albedo of a scene inside an axis-aligned box.

    Attributes:
        encoding: The shared hash-grid encoding.
        density_net: Encoding -> raw density ``[N, 1]``.
        albedo_net: Encoding -> raw albedo ``[N, 3]``.
        bbox: ``[2, 3]`` buffer, the box min and max corners in world units.
    """

    bbox: Tensor
    density_prior: Tensor | None

    def __init__(self, cfg: FieldConfig, bbox: Tensor) -> None:
        super().__init__()
        box = _check_bbox(bbox).clone()
        self.cfg = cfg
        self.encoding = HashGridEncoding(cfg.grid)
        self.density_net = _mlp(self.encoding.output_dim, cfg.hidden_dim, cfg.n_hidden_layers, 1)
        self.albedo_net = _mlp(self.encoding.output_dim, cfg.hidden_dim, cfg.n_hidden_layers, 3)
        self.register_buffer("bbox", box)
        self.register_buffer("density_prior", None)  # optional [1, 1, R, R, R] raw-density grid over the box

    def grid_parameters(self) -> list[nn.Parameter]:
        """The hash grid's parameters (trained at the grid's learning rate)."""
        return list(self.encoding.parameters())

    def color_parameters(self) -> list[nn.Parameter]:
        """What the colour depends on: the hash grid and the albedo head (the mesh stage trains these)."""
        return self.grid_parameters() + list(self.albedo_net.parameters())

    def set_density_prior(self, values: Tensor | None) -> None:
        """Add ``values`` (a ``[R, R, R]`` grid over the box, indexed x, y, z, corners aligned with the box's) to the
        raw density everywhere, trilinearly: the field then starts as that shape (e.g. an existing mesh, for an
        edit) instead of, or besides, the blob. ``None`` removes it."""
        if values is None:
            self.density_prior = None
            return
        if values.dim() != 3 or min(values.shape) < 2 or not bool(torch.isfinite(values).all()):
            raise InputError(f"A density prior must be a finite [R, R, R] grid; got {tuple(values.shape)}.")
        self.density_prior = values.permute(2, 1, 0)[None, None].float().to(self.bbox.device)  # [1, 1, z, y, x]

    def set_bbox(self, bbox: Tensor) -> None:
        """Replace the scene box (``[2, 3]``: min, max corners in world units); the weights stay."""
        self.bbox.copy_(_check_bbox(bbox).to(self.bbox.device))

    # -- coordinates ------------------------------------------------------------------------------------------

    def _unit(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Box coordinates ``u [N, 3]`` in ``[0, 1]`` inside the box, and the inside mask ``[N]``."""
        lo, hi = self.bbox[0], self.bbox[1]
        u = (x - lo) / (hi - lo)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        return u, inside

    def _raw_density(self, u: Tensor, enc: Tensor) -> Tensor:
        """Raw (pre-activation) density ``[N]`` from box coordinates ``u`` and their encoding."""
        raw = self.density_net(enc)[:, 0].float()
        if self.cfg.density_bias == "blob":
            p = 2.0 * u - 1.0  # box-normalised, [-1, 1] per axis
            raw = raw + self.cfg.blob_density * (1.0 - torch.linalg.vector_norm(p, dim=-1) / self.cfg.blob_radius)
        if self.density_prior is not None:
            g = (2.0 * u - 1.0).view(1, -1, 1, 1, 3)
            raw = raw + F.grid_sample(self.density_prior, g, align_corners=True).view(-1)
        return raw + self.cfg.density_shift

    def _activate_density(self, raw: Tensor, inside: Tensor) -> Tensor:
        if self.cfg.density_activation == "softplus":
            sigma = F.softplus(raw)
        else:
            sigma = torch.exp(raw.clamp(max=15.0))
        return torch.where(inside, sigma, torch.zeros_like(sigma))

    # -- queries ----------------------------------------------------------------------------------------------

    def density(self, x: Tensor) -> Tensor:
        """Non-negative density ``[N]`` at world points ``x [N, 3]`` (zero outside the box)."""
        u, inside = self._unit(x)
        enc = self.encoding(u.clamp(0.0, 1.0))
        return self._activate_density(self._raw_density(u, enc), inside)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Density ``[N]`` and albedo ``[N, 3]`` at world points ``x [N, 3]`` (one encoding pass)."""
        u, inside = self._unit(x)
        enc = self.encoding(u.clamp(0.0, 1.0))
        return self._activate_density(self._raw_density(u, enc), inside), self._albedo(enc)

    def _albedo(self, enc: Tensor) -> Tensor:
        return torch.sigmoid(self.albedo_net(enc).float())

    def albedo(self, x: Tensor) -> Tensor:
        """Albedo ``[N, 3]`` in ``(0, 1)`` at world points ``x [N, 3]`` (the clamped box edge outside it)."""
        u, _ = self._unit(x)
        return self._albedo(self.encoding(u.clamp(0.0, 1.0)))

    def normals(self, x: Tensor) -> Tensor:
        """Unit normals ``[N, 3]``: ``-grad density``, normalised (zero where the gradient vanishes).

        Differentiable with respect to the field's weights when grad mode is on (both normal types).
        """
        if self.cfg.normal_type == "analytic":
            grad = self._density_gradient_autograd(x)
        else:
            grad = self._density_gradient_fd(x)
        return F.normalize(-grad, dim=-1, eps=1e-20)

    def _density_gradient_fd(self, x: Tensor) -> Tensor:
        """Central differences, ``[N, 3]`` world-space gradient (6 density queries per point)."""
        half = 0.5 * (self.bbox[1] - self.bbox[0])  # [3]
        step = self.cfg.fd_eps * half  # [3] world units per axis
        offsets = torch.diag(step).repeat_interleave(2, dim=0)  # [6, 3]: +x, +x, +y, +y, +z, +z
        offsets[1::2] *= -1  # +x, -x, +y, -y, +z, -z
        d = self.density((x[None] + offsets[:, None]).reshape(-1, 3)).reshape(6, -1)  # [6, N]
        return ((d[0::2] - d[1::2]) / (2 * step[:, None])).t()

    def _density_gradient_autograd(self, x: Tensor) -> Tensor:
        """Exact ``[N, 3]`` gradient by autograd (a graph for second derivatives when grad mode is on)."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            d = self.density(xg)
            (grad,) = torch.autograd.grad(d.sum(), xg, create_graph=create_graph)
        return grad

    @torch.no_grad()
    def grid_density(self, resolution: int, chunk: int = 2**18) -> Tensor:
        """Density on a regular grid of voxel centres spanning the box, ``[R, R, R]`` indexed ``[x, y, z]``.

        Voxel ``(i, j, k)`` has its centre at ``min + (i + 0.5, j + 0.5, k + 0.5) / R * (max - min)``.
        """
        if resolution < 1 or chunk < 1:
            raise InputError(f"grid_density needs a positive resolution and chunk, got {resolution} and {chunk}.")
        lo, hi = self.bbox[0], self.bbox[1]
        r = resolution
        out = torch.empty(r**3, device=self.bbox.device)
        for s in range(0, r**3, chunk):
            idx = torch.arange(s, min(s + chunk, r**3), device=self.bbox.device)
            ijk = torch.stack([idx // (r * r), (idx // r) % r, idx % r], dim=-1).float()  # [n, 3]
            out[s:s + idx.numel()] = self.density(lo + (ijk + 0.5) / r * (hi - lo))
        return out.reshape(r, r, r)
