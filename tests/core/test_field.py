"""The NeRF field: initial blob, box masking, normals, density grids and trainability."""

import pytest
import torch

from dreamsmith.core.runtime.errors import ConfigError, InputError, ResourceError
from dreamsmith.core.scene.field import FieldConfig, HashGridConfig, HashGridEncoding, NeRFField

SMALL_GRID = {"n_levels": 4, "log2_hashmap_size": 12, "base_resolution": 4, "finest_resolution": 64,
              "backend": "reference"}
CUBE = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
SLAB = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 1.0]])  # anisotropic, off-centre


def make_field(bbox=CUBE, **kw) -> NeRFField:
    torch.manual_seed(0)
    return NeRFField(FieldConfig(grid=HashGridConfig(**SMALL_GRID), **kw), bbox)


def test_blob_init_is_dense_at_the_centre_and_empty_near_the_corners():
    f = make_field(SLAB)
    centre = SLAB.mean(0, keepdim=True)
    corners = SLAB[0] + 0.95 * (SLAB[1] - SLAB[0]) * torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 1], [0, 1, 0]])
    corners = corners + 0.025 * (SLAB[1] - SLAB[0])
    with torch.no_grad():
        d_centre, d_corner = f.density(centre), f.density(corners)
    assert d_centre.item() > 5.0  # softplus(blob_density - 1) ~ 9
    assert (d_corner < 1e-3).all()
    # Halfway to a face along an axis is exactly where the default blob (radius 0.5) crosses zero.
    face_half = centre + torch.tensor([[0.0, 1.0, 0.0]])  # half-size along y is 2
    assert d_centre.item() > f.density(face_half).item() > d_corner.max().item()


def test_points_outside_the_box_have_zero_density():
    f = make_field(SLAB, blob_radius=10.0)  # a huge blob: density is high right up to the faces
    inside = torch.tensor([[-0.999, 0.0, 0.5], [0.0, 1.999, 0.5], [0.0, 0.0, 0.001], [0.999, -1.999, 0.999]])
    outside = torch.tensor([[-1.001, 0.0, 0.5], [0.0, 2.001, 0.5], [0.0, 0.0, -0.001], [5.0, 5.0, 5.0]])
    with torch.no_grad():
        assert (f.density(inside) > 1.0).all()
        assert (f.density(outside) == 0).all()
        d, albedo = f(outside)
    assert (d == 0).all() and albedo.shape == (4, 3) and torch.isfinite(albedo).all()


def test_forward_matches_density_and_albedo():
    f = make_field()
    x = torch.rand(50, 3) * 2 - 1
    d, a = f(x)
    assert d.shape == (50,) and a.shape == (50, 3)
    torch.testing.assert_close(d, f.density(x))
    torch.testing.assert_close(a, f.albedo(x))
    assert (d >= 0).all() and ((a > 0) & (a < 1)).all()


@pytest.mark.parametrize("normal_type", ["finite_difference", "analytic"])
def test_normals_of_a_radial_density_point_outward(monkeypatch, normal_type):
    f = make_field(SLAB, normal_type=normal_type)
    centre = torch.tensor([0.1, -0.3, 0.5])

    def sphere_density(x):  # decreasing with the distance from centre: the normal is radial
        return torch.nn.functional.softplus(20.0 * (0.4 - (x - centre).norm(dim=-1)))

    monkeypatch.setattr(f, "density", sphere_density)
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    x = centre + dirs * (0.2 + 0.3 * torch.rand(200, 1, generator=g))
    n = f.normals(x)
    assert n.shape == (200, 3)
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(200))
    assert (n * dirs).sum(-1).min() > 0.999


def test_analytic_and_finite_difference_normals_agree_on_the_blob():
    f_fd = make_field(fd_eps=1e-3)
    f_an = make_field(normal_type="analytic")
    x = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1) * 0.4  # around the blob's surface
    n_fd, n_an = f_fd.normals(x), f_an.normals(x)
    assert (n_fd * n_an).sum(-1).min() > 0.99
    assert ((n_an * torch.nn.functional.normalize(x, dim=-1)).sum(-1) > 0.99).all()  # outward from the centre
    # Analytic normals can be trained through (second derivatives reach the table).
    (n_an[:, 0].sum()).backward()
    assert f_an.encoding.table.grad.abs().sum() > 0


def test_grid_density_is_indexed_x_y_z_at_voxel_centres(monkeypatch):
    f = make_field(SLAB)
    monkeypatch.setattr(f, "density", lambda x: x[:, 0] + 10.0 * x[:, 1] + 100.0 * x[:, 2])
    r = 5
    grid = f.grid_density(r, chunk=7)  # a chunk that does not divide R^3
    assert grid.shape == (r, r, r)
    lo, size = SLAB[0], SLAB[1] - SLAB[0]
    for i, j, k in [(0, 0, 0), (4, 0, 0), (0, 4, 0), (0, 0, 4), (1, 2, 3), (4, 4, 4)]:
        c = lo + (torch.tensor([i, j, k]) + 0.5) / r * size
        assert abs(grid[i, j, k].item() - (c[0] + 10 * c[1] + 100 * c[2]).item()) < 1e-4


def test_grid_density_of_the_real_field_peaks_at_the_centre():
    f = make_field()
    grid = f.grid_density(9)
    assert not grid.requires_grad
    assert grid.argmax().item() == 4 * 81 + 4 * 9 + 4
    assert grid[0, 0, 0] < 1e-3


def test_adam_fits_density_through_the_hash_table():
    f = make_field(density_bias="none")  # no blob: the softplus is not saturated where the target is
    g = torch.Generator().manual_seed(1)
    x = torch.rand(512, 3, generator=g) * 2 - 1
    target = torch.where(x[:, 0] > 0.2, 3.0, 0.0)  # a slab
    opt = torch.optim.Adam([f.encoding.table], lr=0.3)  # only the table: the loss can only drop through it
    losses = []
    for _ in range(25):
        loss = (f.density(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


def test_set_bbox_moves_the_blob_and_rejects_bad_boxes():
    f = make_field()
    p = torch.tensor([[4.0, 4.0, 4.0]])
    assert f.density(p).item() == 0
    f.set_bbox(CUBE + 4.0)
    assert f.density(p).item() > 5.0
    assert torch.equal(f.bbox, CUBE + 4.0) and "bbox" in f.state_dict()
    for bad in (torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0.0, 1, 1]]), torch.zeros(3, 3)):
        with pytest.raises(InputError, match="max > min"):
            f.set_bbox(bad)
    with pytest.raises(InputError):
        NeRFField(FieldConfig(grid=HashGridConfig(**SMALL_GRID)), torch.zeros(2, 3))


def test_config_errors_and_backends():
    with pytest.raises(ConfigError, match="density_activation"):
        FieldConfig(density_activation="relu")
    with pytest.raises(ConfigError, match="finest_resolution"):
        HashGridConfig(base_resolution=64, finest_resolution=32)
    enc = HashGridEncoding(HashGridConfig(**SMALL_GRID))
    assert enc.output_dim == 8 and enc(torch.rand(10, 3)).shape == (10, 8)
    assert enc.table.shape == (4, 2**12, 2) and enc.table.abs().max() <= 1e-4
    assert enc.resolutions.tolist() == [4, 10, 25, 64]
    if not torch.cuda.is_available():
        assert HashGridEncoding(HashGridConfig(**{**SMALL_GRID, "backend": "auto"})).backend == "reference"
        with pytest.raises(ResourceError, match="reference"):
            HashGridEncoding(HashGridConfig(**{**SMALL_GRID, "backend": "tcnn"}))


def test_exp_activation_and_no_bias():
    f = make_field(density_activation="exp", density_bias="none")
    d = f.density(torch.zeros(3, 3))
    assert (d > 0).all() and (d < 1.0).all()  # exp(~0 - 1) without the blob


def test_density_prior_grid_shapes_the_start_and_is_indexed_x_y_z():
    field = NeRFField(FieldConfig(density_bias="none"), torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    n = 21
    axis = torch.linspace(-1, 1, n)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    # a slab that is dense only where x > 0.3 (so a swapped axis would show)
    field.set_density_prior(torch.where(x > 0.3, 8.0, -8.0) + 0 * y + 0 * z)
    pts = torch.tensor([[0.7, 0.0, 0.0], [-0.7, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 0.7]])
    d = field.density(pts)
    assert d[0] > 5.0 and (d[1:] < 0.1).all()
    field.set_density_prior(None)
    assert field.density(pts).max() < 2.0
    with pytest.raises(InputError):
        field.set_density_prior(torch.zeros(4, 4))
