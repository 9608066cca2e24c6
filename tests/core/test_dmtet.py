import math
import time

import pytest
import torch

from dreamsmith.core.geometry.dmtet import DMTetConfig, DMTetGeometry, marching_tets
from dreamsmith.core.geometry.mesh_ops import face_normals, mesh_area, mesh_volume
from dreamsmith.core.geometry.tetgrid import grid_edges, make_tet_grid, tet_edges
from dreamsmith.core.runtime.errors import ConfigError, InputError

CUBE = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _tet_volumes(verts, tets):
    v = verts[tets]  # [T, 4, 3]
    return torch.linalg.det(v[:, 1:] - v[:, :1]) / 6.0


def _edge_face_counts(faces):
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(e[:, 0] * (int(faces.max()) + 1) + e[:, 1], return_counts=True)
    return counts


@pytest.fixture(scope="module")
def grid64():
    return make_tet_grid(64, CUBE)


def _euler_characteristic(verts, faces):
    return verts.shape[0] - _edge_face_counts(faces).shape[0] + faces.shape[0]


def test_tet_grid_fills_box_without_cracks():
    bbox = torch.tensor([[-1.0, -0.5, 0.0], [1.0, 1.0, 2.0]])
    r = 4
    verts, tets = make_tet_grid(r, bbox)
    assert verts.shape == ((r + 1) ** 3, 3) and verts.dtype == torch.float32
    assert tets.shape == (6 * r**3, 4) and tets.dtype == torch.int64
    # x-major lattice order: reshape(R+1, R+1, R+1)[i, j, k] is the point (x_i, y_j, z_k).
    lattice = verts.reshape(r + 1, r + 1, r + 1, 3)
    assert torch.allclose(lattice[1, 2, 3], bbox[0] + torch.tensor([1.0, 2.0, 3.0]) * (bbox[1] - bbox[0]) / r)
    vol = _tet_volumes(verts.double(), tets)
    assert (vol > 0).all(), "every tet must be positively oriented"
    assert math.isclose(float(vol.sum()), 2.0 * 1.5 * 2.0, rel_tol=1e-6)
    # Every triangle is shared by two tets, except those on the box surface (one tet).
    tri = torch.cat([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]], tets[:, [1, 2, 3]]]).sort(1).values
    uniq, counts = torch.unique(tri, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    p = verts[uniq[counts == 1]]  # [B, 3, 3]
    on_box = ((p - bbox[0]).abs() < 1e-6).all(dim=1) | ((p - bbox[1]).abs() < 1e-6).all(dim=1)
    assert on_box.any(dim=1).all(), "a triangle used by one tet must lie on the box surface"
    # A ball: V - E + F - T = 1.
    edges = tet_edges(tets)
    assert verts.shape[0] - edges.shape[0] + uniq.shape[0] - tets.shape[0] == 1
    # The lattice edge list is the same set as the edges found from the tets.
    fast = grid_edges(r)
    assert (fast[:, 0] < fast[:, 1]).all()
    n = verts.shape[0]
    assert torch.equal(torch.unique(fast[:, 0] * n + fast[:, 1]), edges[:, 0] * n + edges[:, 1])


def test_tet_grid_rejects_bad_input():
    with pytest.raises(InputError, match="max > min"):
        make_tet_grid(8, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]))
    with pytest.raises(InputError, match="resolution"):
        make_tet_grid(0, CUBE)
    with pytest.raises(ConfigError):
        DMTetConfig(resolution=1)


def test_grid_and_extraction_are_fast_at_resolution_64():
    t0 = time.perf_counter()
    verts, tets = make_tet_grid(64, CUBE)
    t_grid = time.perf_counter() - t0
    sdf = verts.norm(dim=-1) - 0.6
    marching_tets(verts, sdf, tets)  # warm-up
    t0 = time.perf_counter()
    mv, faces = marching_tets(verts, sdf, tets)
    t_mt = time.perf_counter() - t0
    assert faces.shape[0] > 10000
    # About 0.02 s each on an idle 2-core CPU; the bounds leave room for a busy shared machine and still catch
    # a Python loop over the 1.5 M tets.
    assert t_grid < 3.0, f"building the R=64 grid took {t_grid:.2f} s"
    assert t_mt < 3.0, f"marching tets at R=64 took {t_mt:.2f} s"


def test_sphere_is_accurate_watertight_and_outward(grid64):
    verts, tets = grid64
    r = 0.6
    mv, faces = marching_tets(verts, verts.norm(dim=-1) - r, tets)
    assert mv.dtype == torch.float32 and faces.dtype == torch.int64
    assert math.isclose(float(mesh_area(mv, faces)), 4 * math.pi * r**2, rel_tol=0.02)
    assert math.isclose(float(mesh_volume(mv, faces)), 4 / 3 * math.pi * r**3, rel_tol=0.02)
    assert (_edge_face_counts(faces) == 2).all(), "every edge must be shared by exactly two faces"
    assert _euler_characteristic(mv, faces) == 2, "one closed sphere (shared vertices, no holes)"
    assert torch.unique(faces).shape[0] == mv.shape[0], "no unused vertices"
    centres = mv[faces].mean(dim=1)
    outward = (face_normals(mv, faces) * centres).sum(-1) > 0
    assert outward.float().mean() > 0.995
    assert ((mv.norm(dim=-1) - r).abs() < 2.0 / 64).all()


def test_torus_has_genus_one_and_right_volume(grid64):
    verts, tets = grid64
    big, small = 0.55, 0.22
    q = torch.stack([verts[:, :2].norm(dim=-1) - big, verts[:, 2]], dim=-1)
    mv, faces = marching_tets(verts, q.norm(dim=-1) - small, tets)
    assert (_edge_face_counts(faces) == 2).all()
    assert _euler_characteristic(mv, faces) == 0
    assert math.isclose(float(mesh_volume(mv, faces)), 2 * math.pi**2 * big * small**2, rel_tol=0.03)
    assert math.isclose(float(mesh_area(mv, faces)), 4 * math.pi**2 * big * small, rel_tol=0.03)


def test_box_sdf_and_zero_values_on_vertices_stay_finite():
    verts, tets = make_tet_grid(16, CUBE)
    # An axis-aligned box whose faces pass exactly through grid vertices: many SDF values are exactly 0.
    d = verts.abs() - 0.5
    sdf = d.clamp_min(0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0)
    sdf = sdf.clone().requires_grad_(True)
    mv, faces = marching_tets(verts, sdf, tets)
    assert torch.isfinite(mv).all()
    vol = mesh_volume(mv, faces)
    assert math.isclose(float(vol.detach()), 1.0, rel_tol=0.05)  # linear interpolation bevels the box edges
    vol.backward()
    assert torch.isfinite(sdf.grad).all()
    # Nearly equal tiny values on both ends of an edge do not blow up.
    tiny = torch.where(sdf.detach() < 0, torch.full_like(sdf, -1e-30), torch.full_like(sdf, 1e-30))
    mv2, _ = marching_tets(verts, tiny, tets)
    assert torch.isfinite(mv2).all()
    assert marching_tets(verts, torch.ones(verts.shape[0]), tets)[1].shape == (0, 3)


def test_volume_gradient_matches_finite_differences():
    torch.manual_seed(0)
    verts, tets = make_tet_grid(6, CUBE)
    verts = verts.double()
    base = verts.norm(dim=-1) - 0.6 + 0.01 * torch.randn(verts.shape[0], dtype=torch.float64)
    sdf = base.clone().requires_grad_(True)
    pos = verts.clone().requires_grad_(True)
    mv, faces = marching_tets(pos, sdf, tets)
    vol = mesh_volume(mv, faces)
    vol.backward()
    g = sdf.grad
    near = g.abs() > 1e-9
    assert near.sum() > 20
    assert (g[near] < 0).all(), "raising the SDF anywhere on the surface must shrink the object"

    def volume(s, p):
        m, f = marching_tets(p, s, tets)
        return float(mesh_volume(m, f))

    h = 1e-6
    for i in near.nonzero()[:8, 0].tolist():
        e = torch.zeros_like(base)
        e[i] = h
        fd = (volume(base + e, verts) - volume(base - e, verts)) / (2 * h)
        assert math.isclose(fd, float(g[i]), rel_tol=1e-4, abs_tol=1e-9)
    for i in near.nonzero()[:4, 0].tolist():
        e = torch.zeros_like(verts)
        e[i, 0] = h
        fd = (volume(base, verts + e) - volume(base, verts - e)) / (2 * h)
        assert math.isclose(fd, float(pos.grad[i, 0]), rel_tol=1e-4, abs_tol=1e-9)


def test_uniform_sdf_raise_shrinks_volume_by_area():
    verts, tets = make_tet_grid(32, CUBE)
    sdf = (verts.norm(dim=-1) - 0.6).double().requires_grad_(True)
    mv, faces = marching_tets(verts.double(), sdf, tets)
    mesh_volume(mv, faces).backward()
    # dV/dc for sdf + c equals minus the surface area for a true distance field.
    assert math.isclose(-float(sdf.grad.sum()), float(mesh_area(mv, faces).detach()), rel_tol=0.05)


def test_geometry_module_init_deform_and_optimise():
    geo = DMTetGeometry(DMTetConfig(resolution=16, deform_scale=0.5), CUBE)
    names = {n for n, _ in geo.named_parameters()}
    assert names == {"sdf", "deform"}
    assert set(geo.state_dict()) == {"sdf", "deform", "bbox"}
    v0, f0 = geo()
    assert f0.shape[0] > 0, "the default SDF must give a surface"
    geo.init_from_sdf(lambda p: p.norm(dim=-1) - 0.5, chunk=1000)
    mv, faces = geo()
    assert math.isclose(float(mesh_volume(mv, faces).detach()), 4 / 3 * math.pi * 0.125, rel_tol=0.05)
    with pytest.raises(InputError, match="one value per tet-grid vertex"):
        geo.init_from_sdf(torch.zeros(10))
    with pytest.raises(InputError, match="NaN"):
        geo.init_from_sdf(torch.full((17**3,), float("nan")))
    # Offsets are bounded by deform_scale grid cells.
    with torch.no_grad():
        geo.deform.fill_(1e3)
    cell = 2.0 / 16
    assert math.isclose(geo.cell_size, cell, rel_tol=1e-6)
    assert float(geo.deform_offsets().detach().abs().max()) <= 0.5 * cell + 1e-6
    with torch.no_grad():
        geo.deform.zero_()
    # A few optimiser steps grow the object toward a larger target volume through both parameters.
    target = 4 / 3 * math.pi * 0.6**3
    start = float(mesh_volume(*geo()).detach())
    for _ in range(10):  # normalised gradient descent (torch.optim's first use costs seconds of imports)
        geo.zero_grad()
        loss = (mesh_volume(*geo()) - target) ** 2
        loss.backward()
        assert geo.deform.grad.abs().sum() > 0 and geo.sdf.grad.abs().sum() > 0
        with torch.no_grad():
            for p in (geo.sdf, geo.deform):
                p -= 0.01 * p.grad / p.grad.abs().max()
    assert float(mesh_volume(*geo()).detach()) > start + 0.05
    frozen = DMTetGeometry(DMTetConfig(resolution=8, learn_deform=False), CUBE)
    assert not frozen.deform.requires_grad


def test_sdf_edge_regularizer_penalises_floaters():
    torch.manual_seed(0)
    geo = DMTetGeometry(DMTetConfig(resolution=16), CUBE)
    clean = float(geo.sdf_edge_regularizer().detach())
    with torch.no_grad():
        far = geo.sdf > 0.3
        idx = far.nonzero()[:, 0]
        geo.sdf[idx[torch.randperm(idx.shape[0])[:40]]] = -0.2  # isolated inside specks: floaters
    noisy = geo.sdf_edge_regularizer()
    assert float(noisy.detach()) > clean > 0
    noisy.backward()
    assert geo.sdf.grad.abs().sum() > 0
    with torch.no_grad():
        geo.sdf.fill_(1.0)
    assert float(geo.sdf_edge_regularizer().detach()) == 0.0


def test_clean_occupancy_seals_pinholed_shells_but_keeps_real_holes():
    import numpy as np

    from dreamsmith.core.stages.surface import clean_occupancy

    shell = np.zeros((40, 40, 40), bool)
    shell[8:32, 8:32, 8:32] = True
    shell[11:29, 11:29, 11:29] = False  # a hollow box...
    shell[20, 20, 8:11] = False  # ...with a pinhole through its wall
    assert clean_occupancy(shell, 0.05)[20, 20, 20], "the hollow behind a pinhole must become solid"
    ring = np.zeros((40, 40, 40), bool)
    ring[5:35, 5:35, 10:30] = True
    ring[15:25, 15:25, :] = False  # a real 10-cell hole through the object
    assert not clean_occupancy(ring, 0.05)[20, 20, 20], "a hole wider than the gap closing must stay open"
    blobs = np.zeros((40, 40, 40), bool)
    blobs[5:20, 5:20, 5:20] = True
    blobs[30:31, 30:31, 30:31] = True  # a speck
    assert clean_occupancy(blobs, 0.05).sum() == 15 ** 3
