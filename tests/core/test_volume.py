import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamsmith.core.render.shading import ShadingConfig
from dreamsmith.core.render.volume import VolumeConfig, VolumeRenderer, ray_aabb, render_rays
from dreamsmith.core.runtime.errors import ConfigError, InputError
from dreamsmith.core.scene.cameras import orbit_cameras
from dreamsmith.core.scene.occupancy import OccupancyConfig, OccupancyGrid

COLOUR = torch.tensor([0.2, 0.6, 0.9])
RADIUS = 0.5


class SphereField:
    """A solid sphere of constant density and colour in the box [-1, 1]^3; counts the points it evaluates."""

    def __init__(self, density: float = 50.0, flip_normals: bool = False) -> None:
        self.bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        self.value = density
        self.flip = flip_normals
        self.evaluated = 0

    def density(self, x):
        return self.value * (x.norm(dim=-1) < RADIUS).float()

    def __call__(self, x):
        self.evaluated += x.shape[0]
        return self.density(x), COLOUR.expand(x.shape[0], 3)

    def normals(self, x):
        n = F.normalize(x, dim=-1)
        return -n if self.flip else n


class VoxelField(nn.Module):
    """A tiny learnable dense voxel field (trilinear density and albedo)."""

    def __init__(self, res: int = 12) -> None:
        super().__init__()
        self.bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        self.sigma = nn.Parameter(torch.full((1, 1, res, res, res), 1.0))
        self.albedo = nn.Parameter(torch.zeros(1, 3, res, res, res))

    def _sample(self, grid, x):
        return F.grid_sample(grid, x.view(1, -1, 1, 1, 3), align_corners=True).view(grid.shape[1], -1).t()

    def density(self, x):
        return F.softplus(self._sample(self.sigma, x)[:, 0] * 5.0)

    def forward(self, x):
        return self.density(x), torch.sigmoid(self._sample(self.albedo, x))

    def normals(self, x):
        return F.normalize(x, dim=-1)


def _cams(az=(0.0, 120.0), el=(10.0, -20.0), size=32):
    return orbit_cameras(torch.tensor(az), torch.tensor(el), 3.0, 40.0, size)


def _disc_distance(size=32):
    """Pixel distance of each pixel centre from the image centre ``[size, size]``."""
    c = torch.arange(size) + 0.5 - size / 2
    return (c[:, None] ** 2 + c[None, :] ** 2).sqrt()


def test_sphere_silhouette_colour_and_depth():
    field = SphereField()
    rend = VolumeRenderer(VolumeConfig(n_samples_per_ray=128))
    out = rend.render_image(field, _cams(), None)
    assert out["rgb"].shape == (2, 32, 32, 3) and out["opacity"].shape == (2, 32, 32, 1)
    # Projected disc radius: f * tan(asin(r / dist)) = 43.96 * tan(9.59 deg) = 7.4 px.
    dist = _disc_distance()
    inside, outside = dist < 6.0, dist > 9.0
    for b in range(2):
        op, rgb = out["opacity"][b, ..., 0], out["rgb"][b]
        assert op[inside].min() > 0.99 and op[outside].max() < 1e-3
        assert torch.allclose(rgb[inside], COLOUR.expand(int(inside.sum()), 3), atol=0.01)
        assert torch.allclose(rgb[outside], torch.ones(int(outside.sum()), 3), atol=1e-3)  # white background
        # Depth at the centre pixel: the near surface, 3.0 - 0.5 from the camera.
        assert abs(float(out["depth"][b, 15:17, 15:17].mean()) - 2.5) < 0.03


def test_early_stop_modes_agree_and_skip_the_inside():
    field = SphereField()
    res = 32
    c = (torch.arange(res) + 0.5) / res * 2 - 1
    grid = OccupancyGrid.from_density_grid(field.density(torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1)),
                                           field.bbox)
    images, counts = {}, {}
    for mode in ("none", "prepass", "blocks"):
        rend = VolumeRenderer(VolumeConfig(n_samples_per_ray=128, early_stop=mode, march_block=16))
        out = rend.render_image(field, _cams(size=24), grid)
        images[mode], counts[mode] = out["rgb"], out["n_samples"]
    assert torch.allclose(images["none"], images["prepass"], atol=2e-3)
    assert torch.allclose(images["none"], images["blocks"], atol=2e-3)
    # Samples behind the opaque front surface are never evaluated with gradients.
    assert counts["prepass"] < 0.4 * counts["none"] and counts["blocks"] < 0.6 * counts["none"]


def test_occupancy_grid_marks_the_sphere_and_skips_empty_space():
    field = SphereField()
    grid = OccupancyGrid(OccupancyConfig(resolution=32, update_every=16), field.bbox)
    assert grid.occupied_fraction == 1.0  # a new grid hides nothing
    assert not grid.update(field, step=5)  # not an update step
    for step in range(0, 16 * 8, 16):
        assert grid.update(field, step)
    assert grid.is_occupied(torch.zeros(1, 3)).item()
    corners = torch.tensor([[-0.97, -0.97, -0.97], [0.97, 0.97, 0.97], [0.97, -0.97, 0.5], [2.0, 0.0, 0.0]])
    assert not grid.is_occupied(corners).any()
    sphere_fraction = 4 / 3 * math.pi * RADIUS ** 3 / 8
    assert sphere_fraction < grid.occupied_fraction < 2.5 * sphere_fraction

    rend = VolumeRenderer(VolumeConfig(n_samples_per_ray=128))
    cams = _cams()
    field.evaluated = 0
    full = rend.render_image(field, cams, None)
    n_full = field.evaluated
    field.evaluated = 0
    skipped = rend.render_image(field, cams, grid)
    assert skipped["n_samples"] == field.evaluated  # the reported count is what the field really saw
    assert field.evaluated < 0.35 * n_full
    diff = (full["rgb"] - skipped["rgb"]).abs()
    assert diff.mean() < 2e-3 and diff.max() < 0.1


def test_occupancy_from_density_grid_and_config_errors():
    res = 16
    c = (torch.arange(res) + 0.5) / res * 2 - 1
    pts = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)
    dens = 50.0 * (pts[..., 0] > 0.5).float()  # a slab at x > 0.5
    grid = OccupancyGrid.from_density_grid(dens, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    assert grid.resolution == 16
    assert grid.is_occupied(torch.tensor([[0.8, 0.0, 0.0]])).item()
    assert not grid.is_occupied(torch.tensor([[-0.8, 0.0, 0.0]])).item()
    with pytest.raises(ConfigError):
        OccupancyConfig(threshold=5.0)
    with pytest.raises(ConfigError):
        ShadingConfig(background="grey")
    with pytest.raises(ConfigError):
        VolumeRenderer().render(SphereField(), torch.zeros(1, 3), torch.ones(1, 3), shading="phong")
    with pytest.raises(InputError):
        VolumeRenderer().render(SphereField(), torch.zeros(2, 2, 3), torch.ones(2, 2, 3))


def test_lambertian_is_brighter_facing_the_light_and_textureless_is_grey():
    field = SphereField()
    rend = VolumeRenderer(VolumeConfig(n_samples_per_ray=128))
    cam = _cams(az=(0.0,), el=(0.0,))  # looks along +Y; image columns grow with world +X
    light = torch.tensor([1.0, 0.0, 0.0])
    lit = rend.render_image(field, cam, None, shading="lambertian", light_dir=light)
    disc = _disc_distance() < 6.0
    lum = lit["rgb"][0].mean(-1)
    right = disc & (torch.arange(32)[None, :] >= 20)
    left = disc & (torch.arange(32)[None, :] < 12)
    assert lum[right].mean() > lum[left].mean() + 0.15
    assert lit["rgb"][0][disc].max() <= COLOUR.max() + 1e-4  # never brighter than the albedo
    flat = rend.render_image(field, cam, None, shading="textureless")  # default light: from the camera
    rgb = flat["rgb"][0][disc]
    assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5) and torch.allclose(rgb[:, 0], rgb[:, 2], atol=1e-5)
    assert float(rgb.mean()) > 0.8  # facing the head light: nearly ambient + diffuse
    # Outward normals seen from outside give no orientation penalty; inverted ones do.
    assert float(flat["orientation"].max()) < 1e-4
    bad = rend.render_image(SphereField(flip_normals=True), cam, None, shading="textureless")
    assert float(bad["orientation"][0, ..., 0][disc].mean()) > 0.5


def test_backgrounds_and_rays_missing_the_box():
    field = SphereField()
    o = torch.tensor([[0.0, -3.0, 0.0], [0.0, -3.0, 0.0]])
    d = torch.tensor([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]])  # away from the box; through the sphere
    near, far = ray_aabb(o, d, field.bbox)
    assert far[0] < 0 and abs(float(near[1]) - 2.0) < 1e-5 and abs(float(far[1]) - 4.0) < 1e-5
    black = VolumeRenderer(VolumeConfig(), ShadingConfig(background="black")).render(field, o, d)
    assert torch.equal(black["rgb"][0], torch.zeros(3)) and black["opacity"][0] == 0
    rend = VolumeRenderer(VolumeConfig(), ShadingConfig(background="random"))
    out = rend.render_image(field, _cams(size=8), None)
    corners = out["rgb"][:, 0, 0]
    assert not torch.allclose(corners[0], corners[1])  # one random colour per camera
    assert torch.allclose(out["rgb"][0, 0, 0], out["rgb"][0, 7, 7])


def test_learned_background_learns_a_colour():
    torch.manual_seed(0)
    field = SphereField()
    rend = VolumeRenderer(VolumeConfig(), ShadingConfig(background="learned"))
    o = torch.zeros(64, 3) + torch.tensor([0.0, 0.0, 5.0])
    d = F.normalize(torch.randn(64, 3) * 0.3 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)  # all miss the box
    target = torch.tensor([1.0, 0.1, 0.1])
    opt = torch.optim.Adam(rend.parameters(), lr=0.05)
    for _ in range(60):
        loss = (rend.render(field, o, d)["rgb"] - target).square().mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in rend.background.parameters())
        opt.step()
    assert float(loss.detach()) < 0.01


def test_gradients_reach_the_field_and_fit_a_target():
    torch.manual_seed(0)
    cams = _cams(az=(0.0, 90.0, 200.0), el=(10.0, 30.0, -10.0), size=16)
    cfg = VolumeConfig(n_samples_per_ray=64)
    target = VolumeRenderer(cfg).render_image(SphereField(), cams, None)["rgb"]
    field = VoxelField()
    rend = VolumeRenderer(cfg)
    opt = torch.optim.Adam(field.parameters(), lr=0.1)
    losses = []
    for _ in range(25):
        loss = (rend.render_image(field, cams, None, perturb=True)["rgb"] - target).square().mean()
        opt.zero_grad()
        loss.backward()
        assert field.sigma.grad.abs().sum() > 0 and field.albedo.grad.abs().sum() > 0
        losses.append(float(loss.detach()))
        opt.step()
    assert losses[-1] < 0.3 * losses[0]


def test_chunking_and_perturbation():
    field = SphereField()
    cams = _cams(size=16)
    big = VolumeRenderer(VolumeConfig(n_samples_per_ray=64)).render_image(field, cams, None)
    small = VolumeRenderer(VolumeConfig(n_samples_per_ray=64, chunk_rays=37)).render_image(field, cams, None)
    assert torch.allclose(big["rgb"], small["rgb"], atol=1e-6) and big["n_samples"] == small["n_samples"]
    torch.manual_seed(1)
    jit = VolumeRenderer(VolumeConfig(n_samples_per_ray=64)).render_image(field, cams, None, perturb=True)
    assert not torch.equal(jit["depth"], big["depth"])  # training samples are jittered
    assert (jit["opacity"] - big["opacity"]).abs().mean() < 0.02


def test_generator_makes_training_renders_reproducible():
    field = SphereField()
    cfg, look = VolumeConfig(n_samples_per_ray=64), ShadingConfig(background="random")
    o, d = _cams(size=8).rays()
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    outs = [render_rays(field, o, d, cfg, perturb=True, generator=torch.Generator().manual_seed(3), shading_cfg=look)
            for _ in range(2)]
    assert torch.equal(outs[0]["rgb"], outs[1]["rgb"]) and torch.equal(outs[0]["depth"], outs[1]["depth"])
    grids = [OccupancyGrid(OccupancyConfig(resolution=8, warmup_steps=0), field.bbox) for _ in range(2)]
    for g in grids:
        g.update(field, 0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(grids[0].density, grids[1].density)
    with pytest.raises(ConfigError):  # a learned background needs its module
        render_rays(field, o, d, shading_cfg=ShadingConfig(background="learned"))
