import math

import numpy as np
import pytest
import torch

from dreamsmith.core.geometry.metrics import chamfer, chamfer_meshes, closest_points_on_mesh, psnr, sample_surface
from dreamsmith.core.runtime.errors import InputError


def uv_sphere(radius=1.0, n_lon=64, n_lat=32, center=(0.0, 0.0, 0.0)):
    """``(verts [V, 3], faces [F, 3])`` of a closed UV sphere."""
    verts = [(0.0, 0.0, 1.0)]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        verts += [(math.sin(th) * math.cos(2 * math.pi * j / n_lon), math.sin(th) * math.sin(2 * math.pi * j / n_lon),
                   math.cos(th)) for j in range(n_lon)]
    verts.append((0.0, 0.0, -1.0))
    faces = []
    ring = lambda i, j: 1 + (i - 1) * n_lon + j % n_lon  # noqa: E731
    for j in range(n_lon):
        faces.append((0, ring(1, j), ring(1, j + 1)))
        faces.append((len(verts) - 1, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)))
        for i in range(1, n_lat - 1):
            a, b, c, d = ring(i, j), ring(i + 1, j), ring(i + 1, j + 1), ring(i, j + 1)
            faces += [(a, b, c), (a, c, d)]
    return np.array(verts) * radius + np.array(center), np.array(faces)


def test_sample_surface_is_on_the_mesh_area_weighted_and_seeded():
    # Two triangles in z = 0: areas 0.5 (x < 1) and 1.5 (x > 1).
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [4, 0, 0], [1, 1, 0]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    p = sample_surface(verts, faces, 20_000, seed=3)
    assert p.shape == (20_000, 3) and np.all(p[:, 2] == 0)
    first = p[:, 0] <= 1.0
    assert np.all(p[first].sum(1) <= 1.0 + 1e-9)  # inside the first triangle
    assert first.mean() == pytest.approx(0.25, abs=0.015)
    assert np.array_equal(p, sample_surface(torch.tensor(verts), torch.tensor(faces), 20_000, seed=3))
    assert not np.array_equal(p, sample_surface(verts, faces, 20_000, seed=4))


def test_sample_surface_refuses_an_empty_mesh():
    with pytest.raises(InputError, match="no faces"):
        sample_surface(np.zeros((3, 3)), np.zeros((0, 3), int), 10, 0)
    with pytest.raises(InputError, match="zero area"):
        sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10, 0)


def test_chamfer_definition_on_known_points():
    res = chamfer(np.array([[0.0, 0, 0], [2, 0, 0]]), np.array([[0.0, 0, 0]]))
    assert res == {"a_to_b_mean": 1.0, "b_to_a_mean": 0.0, "symmetric": 0.5}


def test_chamfer_of_a_mesh_with_itself_is_near_zero_and_a_shift_is_seen():
    mesh = uv_sphere()
    same = chamfer_meshes(mesh, mesh, n=50_000)
    assert same["scale"] == pytest.approx(2 * math.sqrt(3))
    assert same["symmetric"] < 0.004  # sampling noise floor only
    moved = chamfer_meshes((mesh[0] + [0.1, 0, 0], mesh[1]), mesh, n=50_000)
    assert moved["symmetric"] > 3 * same["symmetric"]


def test_chamfer_of_sphere_vs_scaled_sphere_is_the_radius_difference():
    small, big = uv_sphere(1.0), uv_sphere(1.2)
    world = chamfer_meshes(big, small, n=30_000, normalise_by=None)
    assert world["scale"] == 1.0
    for key in ("a_to_b_mean", "b_to_a_mean", "symmetric"):
        assert world[key] == pytest.approx(0.2, abs=0.01)
    frac = chamfer_meshes(big, small, n=30_000)  # normalised by the reference's (small sphere's) bbox diagonal
    assert frac["symmetric"] == pytest.approx(world["symmetric"] / (2 * math.sqrt(3)), rel=1e-6)


def test_psnr_identical_known_noise_and_mask():
    rng = np.random.default_rng(0)
    ref = np.full((64, 64, 3), 0.5)
    assert psnr(ref, ref) == math.inf
    pm = ref + 0.1 * rng.choice([-1.0, 1.0], size=ref.shape)  # MSE exactly 0.01 -> 20 dB
    assert psnr(pm, ref) == pytest.approx(20.0, abs=1e-9)
    assert psnr(torch.tensor(pm), torch.tensor(ref)) == pytest.approx(20.0, abs=1e-9)
    gauss = 0.5 + rng.normal(0.0, 0.05, size=(256, 256, 3)).clip(-0.4, 0.4)
    assert psnr(gauss, np.full_like(gauss, 0.5)) == pytest.approx(-10 * math.log10(0.05 ** 2), abs=0.1)

    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    half = ref.copy()
    half[:, 32:] += 0.3  # error only outside the mask
    assert psnr(half, ref, mask) == math.inf
    assert psnr(half, ref) == pytest.approx(-10 * math.log10(0.5 * 0.09), abs=1e-6)
    assert psnr(half, ref, ~mask) == pytest.approx(-10 * math.log10(0.09), abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(ref, ref[:32])


def test_nearest_points_in_chunks_on_threads_are_the_exhaustive_search():
    """The nearest point on a sphere of points inside, outside and on it: the chunked search on two threads gives
    what one chunk does, and its distances are a brute force over every triangle's (to 1e-12)."""
    verts, faces = uv_sphere(n_lon=16, n_lat=8)
    rng = np.random.default_rng(3)
    d = rng.normal(size=(301, 3))
    points = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.5, 1.5, (301, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chunked = closest_points_on_mesh(points, verts, faces, candidates=len(faces), chunk=7)
    finally:
        torch.set_num_threads(threads)
    whole = closest_points_on_mesh(points, verts, faces, candidates=len(faces), chunk=len(points))
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_array_equal(a, b)
    dist, tri, bary = chunked
    np.testing.assert_allclose(bary.sum(1), 1.0)
    on_surface = (bary[:, :, None] * verts[faces[tri]]).sum(1)
    np.testing.assert_allclose(np.linalg.norm(on_surface - points, axis=1), dist, atol=1e-12)
    # the exhaustive search: each triangle alone (one candidate, one chunk), the nearest of them all
    each = [closest_points_on_mesh(points, verts, faces[i:i + 1])[0] for i in range(len(faces))]
    np.testing.assert_allclose(dist, np.min(each, axis=0), atol=1e-12)
