"""Texture baking: xatlas unwrap, UV-space bake round trip, seam padding, orientation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import marching_cubes

from dreamsmith.core.finish.bake import (
    BakeConfig,
    _pieces,
    bake_mesh,
    bake_texture,
    dilate,
    sample_texture,
    unwrap,
    unwrap_piece_size,
)
from dreamsmith.core.meshio import read_mesh, write_glb
from dreamsmith.core.runtime.errors import InputError, NumericalError

SIZE = 256


def _sphere(n: int = 24, radius: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """A marching-cubes sphere ``[V, 3]``, ``[F, 3]`` centred at the origin."""
    g = np.linspace(-1.0, 1.0, n)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    verts, faces, _, _ = marching_cubes(np.sqrt(x**2 + y**2 + z**2) - radius, 0.0, spacing=(2.0 / (n - 1),) * 3)
    return (verts - 1.0).astype(np.float32), faces.astype(np.int64)


def _color(points: torch.Tensor) -> torch.Tensor:
    """A smooth colour field in [0.2, 0.8] that differs along every axis."""
    p = points.float()
    return 0.5 + 0.3 * torch.sin(torch.stack([2.0 * p[:, 0] + 1.0, 3.0 * p[:, 1], 2.5 * p[:, 2] - 0.5], dim=-1))


def _surface_samples(verts, faces, uvs, count=20000, seed=0):
    """Random surface points ``[N, 3]`` and their UVs ``[N, 2]`` (barycentric samples of random faces)."""
    rng = np.random.default_rng(seed)
    fi = rng.integers(0, len(faces), count)
    bary = rng.dirichlet([1.0, 1.0, 1.0], count)[:, :, None]
    return (verts[faces[fi]] * bary).sum(1), (uvs[faces[fi]] * bary).sum(1)


@pytest.fixture(scope="module", params=[(24, {}, 1), (32, {"unwrap_split_faces": 0}, 8)],
                ids=["one piece", "eight pieces"])
def baked(request):
    """A sphere unwrapped whole (3k faces: under the default's size to split), and one unwrapped in eight pieces of
    about 700 faces (5.8k, split whatever its size)."""
    n, options, pieces = request.param
    verts, faces = _sphere(n)
    cfg = BakeConfig(texture_size=SIZE, **options)
    assert len(_pieces(verts, faces, unwrap_piece_size(len(faces), cfg))) == pieces
    new_verts, new_faces, uvs, vmap = unwrap(verts, faces, cfg)
    texture, mask = bake_texture(new_verts, new_faces, uvs, _color, SIZE, padding=8)
    return dict(verts=verts, faces=faces, new_verts=new_verts, new_faces=new_faces, uvs=uvs, vmap=vmap,
                texture=texture, mask=mask)


def test_unwrap_gives_non_overlapping_atlas_in_unit_square(baked):
    uvs, nf = baked["uvs"], baked["new_faces"]
    assert uvs.dtype == np.float32 and uvs.min() >= 0.0 and uvs.max() <= 1.0
    # Same triangles in the same order, on copies of the input vertices.
    np.testing.assert_array_equal(baked["new_verts"], baked["verts"][baked["vmap"]])
    np.testing.assert_array_equal(baked["new_verts"][nf], baked["verts"][baked["faces"]])
    assert len(uvs) > len(baked["verts"])  # seams duplicate vertices
    # Charts do not overlap: the texels covered by the bake match the total UV area; the atlas is well used.
    a = uvs[nf]
    area = 0.5 * np.abs((a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1])
                        - (a[:, 1, 1] - a[:, 0, 1]) * (a[:, 2, 0] - a[:, 0, 0]))
    assert (area > 0).all()
    assert abs(baked["mask"].mean() - area.sum()) < 0.03
    assert area.sum() > 0.4


def test_bake_round_trip_reproduces_colour_field(baked):
    points, uv = _surface_samples(baked["new_verts"], baked["new_faces"], baked["uvs"])
    expected = _color(torch.from_numpy(points)).numpy()
    err = np.abs(sample_texture(baked["texture"], uv) - expected)
    assert err.mean() < 2.0 / 255, err.mean() * 255
    assert np.percentile(err, 99) < 4.0 / 255
    assert err.max() < 12.0 / 255


def test_padding_fills_seams_so_bilinear_samples_do_not_bleed(baked):
    texture, mask = baked["texture"], baked["mask"]
    assert texture.shape == (SIZE, SIZE, 3) and texture.dtype == np.uint8
    assert 0.3 < mask.mean() < 0.95
    # Every texel holds a plausible colour of the field (in [0.2, 0.8]): nothing is left black.
    assert texture.min() >= int(0.19 * 255) and texture.max() <= int(0.81 * 255) + 1
    # Without padding, uncovered texels get one flat colour and samples near chart borders bleed it in.
    raw = texture.astype(np.float32) / 255.0
    unpadded = dilate(np.where(mask[..., None], raw, 0.0), mask, 0)
    np.testing.assert_array_equal(unpadded[mask], raw[mask])
    points, uv = _surface_samples(baked["new_verts"], baked["new_faces"], baked["uvs"], seed=1)
    expected = _color(torch.from_numpy(points)).numpy()
    err_padded = np.abs(sample_texture(texture, uv) - expected).max()
    err_unpadded = np.abs(sample_texture(unpadded, uv) - expected).max()
    assert err_padded < 12.0 / 255
    assert err_unpadded > 36.0 / 255


def test_texture_row_zero_is_v_zero():
    """A quad whose position equals its UV: texel (r, c) must hold colour ((c + 0.5) / W, (r + 0.5) / H)."""
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = verts[:, :2].copy()
    h, w = 8, 16
    texture, mask = bake_texture(verts, faces, uvs, lambda p: p.clone(), (h, w), padding=None)
    assert mask.all()
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    np.testing.assert_allclose(texture[..., 0], (cols + 0.5) / w * 255, atol=0.6)
    np.testing.assert_allclose(texture[..., 1], (rows + 0.5) / h * 255, atol=0.6)
    assert (texture[..., 2] == 0).all()


def test_bake_mesh_gives_exportable_textured_mesh(tmp_path):
    verts, faces = _sphere(n=12)
    mesh = bake_mesh(torch.from_numpy(verts), torch.from_numpy(faces), _color, BakeConfig(texture_size=64), name="ball")
    assert mesh.texture.shape == (64, 64, 3) and mesh.uvs.shape == (len(mesh.verts), 2)
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)
    # Normals point outward (skimage's marching cubes winds this sphere counter-clockwise seen from outside).
    assert ((mesh.normals * mesh.verts).sum(1) > 0).all()
    v, f, uv, tex = read_mesh(write_glb(mesh, tmp_path / "ball.glb"))
    np.testing.assert_allclose(v, mesh.verts, atol=1e-6)
    np.testing.assert_array_equal(tex, mesh.texture)


def test_user_errors_are_clear():
    verts, faces = _sphere(n=12)
    with pytest.raises(InputError, match="Decimate"):
        unwrap(verts, faces, BakeConfig(max_faces_for_unwrap=100))
    with pytest.raises(InputError, match="no faces"):
        unwrap(verts, np.zeros((0, 3), np.int64))
    quad_v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]], np.float32)
    with pytest.raises(NumericalError, match="NaN"):
        bake_texture(quad_v, np.array([[0, 1, 2]]), quad_v[:, :2], lambda p: p * float("nan"), 8)


def test_a_generated_surface_over_the_unwrap_limit_is_decimated_to_it_not_refused():
    """A job's own surface (DMTet 192 at the high preset gives ~270k faces, over the 200k unwrap limit) is baked at
    the limit with a normal map of the full surface, where unwrapping it as it is would end the job in an error."""
    from dreamsmith.core.finish.levels import bake_levels, level_budgets

    verts, faces = _sphere(n=40)
    limit = len(faces) // 3
    cfg = BakeConfig(texture_size=64, max_faces_for_unwrap=limit)
    assert level_budgets(len(faces), cfg) == [limit]
    assert level_budgets(len(faces), BakeConfig(faces=limit // 2, max_faces_for_unwrap=limit)) == [limit // 2]
    mesh = bake_levels(verts, faces, _color, cfg, name="dense")
    assert 0.9 * limit <= len(mesh.faces) <= limit and mesh.normal_map is not None
