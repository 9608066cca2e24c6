"""Pinhole cameras in the OpenGL convention (x right, y up, looking down -z), batched.

World space is Blender's: Z up. Image rows go top to bottom; pixel ``(row i, col j)`` has its
centre at ``(j + 0.5, i + 0.5)`` in pixel units. ``world_to_clip`` produces clip coordinates
whose NDC ``y`` grows with the row index, so a rasteriser that maps row ``i`` to
``ndc_y = (2 i + 1) / H - 1`` (nvdiffrast's convention) returns top-row-first images that line up
with :meth:`Cameras.rays`.

Also the random training views of score distillation (:class:`ViewSamplerConfig`, :func:`sample_views`): cameras
on a sphere around the scene, with their angles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Cameras:
    """A batch of ``B`` pinhole cameras sharing one image size.

    Attributes:
        c2w: ``[B, 4, 4]`` camera-to-world matrices (OpenGL camera axes).
        fx, fy, cx, cy: ``[B]`` intrinsics in pixels (origin at the top-left image corner).
        width, height: Image size in pixels.
    """

    c2w: Tensor
    fx: Tensor
    fy: Tensor
    cx: Tensor
    cy: Tensor
    width: int
    height: int

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device: torch.device | str) -> Cameras:
        """A copy on ``device``."""
        return Cameras(self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device),
                       self.cy.to(device), self.width, self.height)

    def __getitem__(self, idx) -> Cameras:
        """Select cameras by index, slice, list or tensor; always returns a batch."""
        if isinstance(idx, int):
            idx = [idx]
        return Cameras(self.c2w[idx], self.fx[idx], self.fy[idx], self.cx[idx], self.cy[idx], self.width, self.height)

    def resized(self, width: int, height: int) -> Cameras:
        """The same cameras rendering an image of another size (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        return Cameras(self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    @property
    def centers(self) -> Tensor:
        """``[B, 3]`` camera positions in world space."""
        return self.c2w[:, :3, 3]

    def rays(self, offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """World-space rays through every pixel centre, or moved from it by ``offsets``.

        Args:
            offsets: Optional ``[B, H, W, 2]`` shifts in pixels (x right, y down), e.g. uniform in [-0.5, 0.5) to
                jitter each ray within its pixel.

        Returns:
            origins ``[B, H, W, 3]`` and unit directions ``[B, H, W, 3]``.
        """
        dev, dt = self.c2w.device, self.c2w.dtype
        j = torch.arange(self.width, device=dev, dtype=dt) + 0.5
        i = torch.arange(self.height, device=dev, dtype=dt) + 0.5
        ii, jj = torch.meshgrid(i, j, indexing="ij")  # [H, W]
        ii, jj = ii[None], jj[None]
        if offsets is not None:
            jj, ii = jj + offsets[..., 0].to(dt), ii + offsets[..., 1].to(dt)
        x = (jj - self.cx[:, None, None]) / self.fx[:, None, None]
        y = -(ii - self.cy[:, None, None]) / self.fy[:, None, None]
        d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [B, H, W, 3]
        rot = self.c2w[:, :3, :3]
        d = torch.einsum("bij,bhwj->bhwi", rot, d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        o = self.c2w[:, None, None, :3, 3].expand_as(d)
        return o, d

    def projection(self, near: float = 0.05, far: float = 100.0) -> Tensor:
        """``[B, 4, 4]`` OpenGL-style projection from camera space to clip space (rows top to bottom)."""
        b = len(self)
        p = torch.zeros(b, 4, 4, device=self.c2w.device, dtype=self.c2w.dtype)
        w, h = self.width, self.height
        p[:, 0, 0] = 2 * self.fx / w
        p[:, 0, 2] = 1 - 2 * self.cx / w
        p[:, 1, 1] = -2 * self.fy / h
        p[:, 1, 2] = 1 - 2 * self.cy / h
        p[:, 2, 2] = -(far + near) / (far - near)
        p[:, 2, 3] = -2 * far * near / (far - near)
        p[:, 3, 2] = -1.0
        return p

    def world_to_clip(self, near: float = 0.05, far: float = 100.0) -> Tensor:
        """``[B, 4, 4]`` matrix taking homogeneous world points to clip space."""
        return self.projection(near, far) @ torch.linalg.inv(self.c2w)

    def project(self, points: Tensor, near: float = 0.05, far: float = 100.0) -> Tensor:
        """Clip-space positions ``[B, N, 4]`` of world points ``[N, 3]`` (or ``[B, N, 3]``)."""
        if points.dim() == 2:
            points = points[None].expand(len(self), -1, -1)
        homo = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
        return homo @ self.world_to_clip(near, far).transpose(1, 2)

    def pixel_coords(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Pixel coordinates ``[B, N, 2]`` (x right, y down) and camera depth ``[B, N]`` of world points ``[N, 3]``."""
        w2c = torch.linalg.inv(self.c2w)
        pc = points @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]  # [B, N, 3]
        depth = -pc[..., 2]
        z = depth.clamp_min(1e-8)
        u = self.cx[:, None] + self.fx[:, None] * pc[..., 0] / z
        v = self.cy[:, None] - self.fy[:, None] * pc[..., 1] / z
        return torch.stack([u, v], dim=-1), depth


def mask_at_points(camera: Cameras, mask: Tensor, points: Tensor, bilinear: bool = False) -> tuple[Tensor, Tensor]:
    """What one camera's mask says at world ``points`` ``[N, 3]``: its value ``[N]`` at each point's pixel (the
    pixel the point falls in, or bilinear between pixel centres) and ``[N]`` bool whether the camera sees the point
    at all (in front of it, inside its frame). ``mask``: ``[1, 1, H, W]``, rows from the top, covering the camera's
    frame at any resolution."""
    h, w = mask.shape[-2:]
    uv, depth = camera.pixel_coords(points.to(mask))
    uv, depth = uv[0], depth[0]
    u, v = uv[:, 0], uv[:, 1]
    seen = (depth > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    if bilinear:
        xy = uv / uv.new_tensor([camera.width, camera.height]) * 2.0 - 1.0  # -1..1 across the frame
        value = F.grid_sample(mask, xy[None, None], mode="bilinear", padding_mode="border", align_corners=False)
        return value[0, 0, 0], seen
    if (w, h) != (camera.width, camera.height):
        u, v = u * (w / camera.width), v * (h / camera.height)
    return mask[0, 0, v.long().clamp(0, h - 1), u.long().clamp(0, w - 1)], seen


def camera_light(cams: Cameras, offset: tuple[float, float]) -> Tensor:
    """Unit directions ``[B, 3]`` towards a light fixed to each camera: ``(right, up, 1)`` in the camera's frame.

    ``offset = (0, 0)`` is a headlight; ``(-0.5, 0.6)`` lights from the upper left, which shades the faces of a box
    in distinct flat tones (a headlight lights every face turned to the camera alike).
    """
    rot = cams.c2w[:, :3, :3]
    d = rot[:, :, 2] + offset[0] * rot[:, :, 0] + offset[1] * rot[:, :, 1]
    return d / d.norm(dim=-1, keepdim=True)


def look_at(eye: Tensor, target: Tensor, up: tuple[float, float, float] | Tensor = (0.0, 0.0, 1.0)) -> Tensor:
    """Camera-to-world matrices ``[B, 4, 4]`` for cameras at ``eye [B, 3]`` looking at ``target [B, 3]`` (``up``: one
    vector, or ``[B, 3]``)."""
    fwd = target - eye
    fwd = fwd / fwd.norm(dim=-1, keepdim=True)
    up_t = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(fwd)
    right = torch.linalg.cross(fwd, up_t, dim=-1)
    # Looking straight up or down: pick another up vector.
    bad = right.norm(dim=-1) < 1e-6
    if bad.any():
        alt = torch.tensor((0.0, 1.0, 0.0), dtype=eye.dtype, device=eye.device).expand_as(fwd)
        right = torch.where(bad[:, None], torch.linalg.cross(fwd, alt, dim=-1), right)
    right = right / right.norm(dim=-1, keepdim=True)
    cam_up = torch.linalg.cross(right, fwd, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, cam_up, -fwd, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_cameras(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor | float, fov_deg: float, width: int,
                  height: int | None = None, target: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Cameras:
    """Cameras on a sphere around ``target`` (azimuth 0 = the front, on the -Y side, as in Blender).

    Args:
        azimuth_deg: ``[B]`` azimuth in degrees, counter-clockwise seen from above, 0 = camera on the -Y axis.
        elevation_deg: ``[B]`` elevation in degrees above the XY plane.
        distance: Distance from ``target`` (scalar or ``[B]``).
        fov_deg: Vertical field of view in degrees.
        width, height: Image size (``height`` defaults to ``width``).
        target: The point looked at.
    """
    height = height or width
    az = torch.deg2rad(azimuth_deg.double()).float()
    el = torch.deg2rad(elevation_deg.double()).float()
    dist = torch.as_tensor(distance, dtype=torch.float32).expand_as(az)
    tgt = torch.tensor(target, dtype=torch.float32).expand(az.shape[0], 3)
    eye = tgt + dist[:, None] * torch.stack([torch.sin(az) * torch.cos(el), -torch.cos(az) * torch.cos(el),
                                             torch.sin(el)], dim=-1)
    c2w = look_at(eye, tgt)
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    b = az.shape[0]
    full = torch.full((b,), f, dtype=torch.float32)
    cx, cy = torch.full((b,), width / 2.0), torch.full((b,), height / 2.0)
    return Cameras(c2w, full, full.clone(), cx, cy, width, height)


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
        elevation_sphere_fraction: Share of the steps whose elevations are drawn uniformly on the sphere (in
            ``sin``) rather than uniformly in angle (threestudio draws half of its batches each way).
        camera_perturb: Each camera position moves by up to this much along each axis (uniform, world units).
        center_perturb: The point each camera looks at moves from the centre by a normal offset of this standard
            deviation (world units).
        up_perturb: The up vector of each camera tilts by a normal offset of this standard deviation.
    """

    distance_min: float = 2.0
    distance_max: float = 2.0
    fov_min: float = 40.0
    fov_max: float = 40.0
    elevation_min: float = -10.0
    elevation_max: float = 60.0
    views_per_step: int = 4
    elevation_sphere_fraction: float = 0.0
    camera_perturb: float = 0.0
    center_perturb: float = 0.0
    up_perturb: float = 0.0


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
    if cfg.elevation_sphere_fraction > 0 and float(torch.rand(1, generator=generator)) < cfg.elevation_sphere_fraction:
        lo, hi = (math.sin(math.radians(e)) for e in (cfg.elevation_min, cfg.elevation_max))
        el = torch.rad2deg(torch.asin(_uniform(lo, hi, n, generator)))
    else:
        el = _uniform(cfg.elevation_min, cfg.elevation_max, n, generator)
    dist = _uniform(cfg.distance_min, cfg.distance_max, n, generator)
    fov = float(_uniform(cfg.fov_min, cfg.fov_max, 1, generator))
    cams = orbit_cameras(az, el, dist, fov, size)
    if cfg.camera_perturb > 0 or cfg.center_perturb > 0 or cfg.up_perturb > 0:
        eye = cams.centers + (2 * torch.rand(n, 3, generator=generator) - 1) * cfg.camera_perturb
        target = torch.randn(n, 3, generator=generator) * cfg.center_perturb
        up = torch.tensor([0.0, 0.0, 1.0]) + torch.randn(n, 3, generator=generator) * cfg.up_perturb
        cams.c2w = look_at(eye, target, up)
    return cams, az, el
