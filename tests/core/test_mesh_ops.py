import math

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from dreamsmith.core.geometry.mesh_ops import (
    NORMAL_FORMS,
    compact,
    face_normals,
    laplacian_loss,
    largest_components,
    mesh_area,
    mesh_volume,
    normal_consistency_loss,
    uniform_laplacian,
    vertex_normals,
)
from dreamsmith.core.runtime.errors import InputError


def _convex_mesh(points):
    """Closed, outward-wound triangle mesh of the convex hull of ``points`` (which must contain the origin)."""
    faces = torch.from_numpy(ConvexHull(points.numpy()).simplices.astype(np.int64))
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    inward = (torch.linalg.cross(b - a, c - a, dim=-1) * (a + b + c)).sum(-1) < 0
    faces[inward] = faces[inward][:, [0, 2, 1]]
    return points, faces


def _sphere(n, radius=1.0, center=(0.0, 0.0, 0.0)):
    """Fibonacci points on a sphere, triangulated by their convex hull."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z**2).sqrt()
    p = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)
    verts, faces = _convex_mesh(p)
    return (verts * radius + torch.tensor(center, dtype=torch.float64)).float(), faces


def _cube(side):
    corners = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float64)
    verts, faces = _convex_mesh(corners)
    return (verts * side / 2).float(), faces


def _flat_grid(n):
    """An ``n x n`` vertex grid on z = 0 with unit spacing, two triangles per square, wound toward +z."""
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    verts = torch.stack([x, y, torch.zeros_like(x)], dim=-1).reshape(-1, 3)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1), idx[1:, 1:].reshape(-1), idx[1:, :-1].reshape(-1)
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)])
    interior = ((verts[:, 0] > 0) & (verts[:, 0] < n - 1) & (verts[:, 1] > 0) & (verts[:, 1] < n - 1))
    return verts, faces, interior


def test_normals_of_sphere_and_plane():
    verts, faces = _sphere(500)
    vn = vertex_normals(verts, faces)
    assert torch.allclose(vn.norm(dim=-1), torch.ones(500), atol=1e-5)
    assert (vn * verts).sum(-1).min() > 0.99, "vertex normals of a sphere must be radial and outward"
    fn = face_normals(verts, faces)
    assert ((fn * verts[faces].mean(1)).sum(-1) > 0.95).all()
    gv, gf, _ = _flat_grid(5)
    assert torch.allclose(face_normals(gv, gf), torch.tensor([0.0, 0.0, 1.0]).expand(gf.shape[0], 3))
    # An unused vertex gets a finite unit normal and no NaN gradient.
    extra = torch.cat([verts, torch.tensor([[5.0, 5.0, 5.0]])]).requires_grad_(True)
    vn2 = vertex_normals(extra, faces)
    assert torch.equal(vn2[-1].detach(), torch.tensor([0.0, 0.0, 1.0]))
    vn2.sum().backward()
    assert torch.isfinite(extra.grad).all()


def test_area_and_signed_volume():
    verts, faces = _cube(2.0)
    assert math.isclose(float(mesh_area(verts, faces)), 24.0, rel_tol=1e-6)
    assert math.isclose(float(mesh_volume(verts, faces)), 8.0, rel_tol=1e-6)
    assert math.isclose(float(mesh_volume(verts + torch.tensor([3.0, -1.0, 2.0]), faces)), 8.0, rel_tol=1e-5)
    assert math.isclose(float(mesh_volume(verts, faces[:, [0, 2, 1]])), -8.0, rel_tol=1e-6)
    sv, sf = _sphere(2000, radius=0.5)
    assert math.isclose(float(mesh_volume(sv, sf)), 4 / 3 * math.pi * 0.125, rel_tol=0.01)
    assert math.isclose(float(mesh_area(sv, sf)), math.pi, rel_tol=0.01)


def test_laplacian_flat_grid_is_zero_inside_and_noise_is_smoothed():
    verts, faces, interior = _flat_grid(12)
    assert uniform_laplacian(verts, faces)[interior].abs().max() < 1e-5
    torch.manual_seed(0)
    noisy = verts.clone()
    noisy[:, 2] += 0.2 * torch.randn(verts.shape[0])
    assert uniform_laplacian(noisy, faces)[interior].abs().max() > 0.1
    assert float(laplacian_loss(noisy, faces)) > float(laplacian_loss(verts, faces)) + 0.03
    # Descending the loss flattens the bumps.
    x = noisy.clone().requires_grad_(True)
    start = float(x[:, 2].detach().std())
    for _ in range(50):
        loss = laplacian_loss(x, faces)
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x -= 20.0 * g
    assert float(x[:, 2].detach().std()) < 0.5 * start
    assert float(laplacian_loss(verts, torch.zeros(0, 3, dtype=torch.int64))) == 0.0


def test_normal_consistency_plane_zero_noisy_sphere_positive():
    gv, gf, _ = _flat_grid(8)
    assert float(normal_consistency_loss(gv, gf)) < 1e-6
    verts, faces = _sphere(400)
    clean = float(normal_consistency_loss(verts, faces))
    torch.manual_seed(0)
    bumpy = verts * (1 + 0.05 * torch.randn(verts.shape[0], 1))
    noisy = normal_consistency_loss(bumpy.requires_grad_(True), faces)
    assert float(noisy.detach()) > 2 * clean > 0
    noisy.backward()
    assert torch.isfinite(bumpy.grad).all() and bumpy.grad.abs().sum() > 0
    # A fold (two faces on one edge, one flipped over) costs close to the maximum of 2.
    fold_v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.001]])
    fold = normal_consistency_loss(fold_v, torch.tensor([[0, 1, 2], [1, 2, 3]]))
    assert float(fold) > 1.9


def _hinge(angles_deg: list[float]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A strip of unit squares (two triangles each) in the XZ plane, extruded along Y, bent by ``angles_deg`` (one
    per bend): its vertices, faces and number of interior edges (a diagonal per square and the bends)."""
    profile, heading = [(0.0, 0.0), (1.0, 0.0)], 0.0
    for bend in angles_deg:
        heading += math.radians(bend)
        x, z = profile[-1]
        profile.append((x + math.cos(heading), z + math.sin(heading)))
    verts = torch.tensor([[x, y, z] for x, z in profile for y in (0.0, 1.0)], dtype=torch.float32)
    faces = []
    for k in range(len(profile) - 1):
        a, b, c, d = 2 * k, 2 * k + 1, 2 * k + 2, 2 * k + 3
        faces += [[a, c, b], [b, c, d]]
    return verts, torch.tensor(faces), (len(profile) - 1) + len(angles_deg)


@pytest.mark.parametrize("form", NORMAL_FORMS)
def test_normal_consistency_forms_weigh_a_crease_as_documented(form):
    """The cosine form rounds a crease (one 90-degree crease costs more than two of 45, or three of 30); the angle
    form is the total variation of the normals: the same 90 degrees cost about the same however they are spread,
    and a small wrinkle costs about its angle (far more, relative to a crease, than under the cosine)."""
    def total(angles):
        v, f, edges = _hinge(angles)
        return float(normal_consistency_loss(v, f, form)) * edges

    one, two, three = total([90.0]), total([45.0, 45.0]), total([30.0, 30.0, 30.0])
    wrinkle = total([5.0])
    if form == "cosine":
        assert one > 1.6 * two and one > 2.4 * three > 0
        assert wrinkle / one < 0.01
    else:
        assert one == pytest.approx(two, rel=0.1) and one == pytest.approx(three, rel=0.12)
        assert wrinkle / one > 0.05
    with pytest.raises(ValueError, match="form must be one of"):
        normal_consistency_loss(*_hinge([10.0])[:2], "square")


def test_largest_components_keeps_bigger_sphere():
    small_v, small_f = _sphere(80, radius=0.3, center=(3.0, 0.0, 0.0))
    big_v, big_f = _sphere(300)
    verts = torch.cat([small_v, big_v]).requires_grad_(True)
    faces = torch.cat([small_f, big_f + small_v.shape[0]])
    kv, kf = largest_components(verts, faces, keep=1)
    assert kf.shape == big_f.shape and kv.shape[0] == 300
    assert kv.detach().norm(dim=-1).max() < 1.01, "the kept component is the big sphere at the origin"
    assert torch.unique(kf).shape[0] == kv.shape[0] and int(kf.max()) == kv.shape[0] - 1
    assert math.isclose(float(mesh_volume(kv, kf).detach()), float(mesh_volume(big_v, big_f)), rel_tol=1e-6)
    kv.sum().backward()
    assert verts.grad[:80].abs().sum() == 0 and (verts.grad[80:] == 1).all()
    both_v, both_f = largest_components(verts, faces, keep=2)
    assert both_f.shape[0] == faces.shape[0]
    only_v, only_f = largest_components(verts, faces, keep=2, min_fraction=0.3)
    assert only_f.shape[0] == big_f.shape[0]
    with pytest.raises(InputError):
        largest_components(verts, faces, keep=0)


def test_compact_removes_unused_vertices():
    verts, faces = _cube(1.0)
    padded = torch.cat([torch.full((3, 3), 9.0), verts, torch.full((2, 3), -9.0)])
    cv, cf, kept = compact(padded, faces + 3, return_index=True)
    assert cv.shape == (8, 3) and torch.equal(kept, torch.arange(3, 11))
    assert torch.equal(cv[cf], verts[faces])
    with pytest.raises(InputError):
        mesh_area(verts, faces[:, :2])
