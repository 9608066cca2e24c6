"""The differentiable rasteriser: coverage, perspective, visibility, gradients, antialiasing, textures."""

import pytest
import torch

from dreamsmith.core.scene.cameras import Cameras, orbit_cameras
from dreamsmith.kernels import raster
from dreamsmith.kernels.antialias import antialias
from dreamsmith.kernels.cpu_build import cpu_ops
from dreamsmith.kernels.raster import interpolate, rasterize
from dreamsmith.kernels.texture import texture

TRI = torch.tensor([[0, 1, 2]])


@pytest.fixture(autouse=True, params=["reference", "fast"])
def _kernels(monkeypatch, request):
    """Every test runs on the PyTorch reference and on the fast path (C++ visibility on the CPU)."""
    if request.param == "fast" and cpu_ops() is None:
        pytest.skip("no C++ CPU kernels here")
    monkeypatch.setenv("DREAMSMITH_KERNELS", "reference" if request.param == "reference" else "")


def _pixel_centres(h, w, dtype=torch.float64):
    """NDC centres ``[H, W]`` x and y of every pixel (row 0 = ndc y -1)."""
    y = (2 * torch.arange(h, dtype=dtype) + 1) / h - 1
    x = (2 * torch.arange(w, dtype=dtype) + 1) / w - 1
    return torch.meshgrid(y, x, indexing="ij")[::-1]


def _inside(ndc_tri, h, w):
    """Independent point-in-triangle test of the pixel centres against a 2D NDC triangle ``[3, 2]``."""
    x, y = _pixel_centres(h, w)
    signs = []
    for k in range(3):
        a, b = ndc_tri[k], ndc_tri[(k + 1) % 3]
        signs.append((b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]))
    s = torch.stack(signs)
    return (s > 0).all(0) | (s < 0).all(0)


def _clip(ndc_xy, z, w):
    """Clip positions ``[V, 4]`` whose perspective divide gives ``ndc_xy [V, 2]`` and depth ``z [V]``."""
    return torch.cat([ndc_xy * w[:, None], (z * w)[:, None], w[:, None]], 1)


def test_coverage_and_barycentrics_reproduce_pixel_centres():
    h, w = 20, 28
    tris = [torch.tensor([[-0.83, -0.71], [0.77, -0.52], [0.11, 0.87]], dtype=torch.float64),
            torch.tensor([[0.61, 0.93], [-0.92, 0.13], [0.35, -0.88]], dtype=torch.float64)]  # other winding
    wv = torch.tensor([[1.0, 2.5, 0.6], [3.0, 0.8, 1.7]], dtype=torch.float64)  # unequal w: perspective
    pos = torch.stack([_clip(t, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), wv[b]) for b, t in enumerate(tris)])
    rast = rasterize(pos, TRI, (h, w))
    assert rast.shape == (2, h, w, 4)
    for b in range(2):
        expected = _inside(tris[b], h, w)
        covered = rast[b, ..., 3] == 1
        assert expected.sum() > 100
        assert torch.equal(covered, expected)
        # Interpolating clip x, y, w and dividing gives back each covered pixel's centre.
        xyw = interpolate(pos[b:b + 1][..., [0, 1, 3]], rast[b:b + 1], TRI)[0]
        x, y = _pixel_centres(h, w)
        assert torch.allclose((xyw[..., 0] / xyw[..., 2])[covered], x[covered], atol=1e-9)
        assert torch.allclose((xyw[..., 1] / xyw[..., 2])[covered], y[covered], atol=1e-9)
        assert (xyw[~covered] == 0).all()


def test_fan_around_a_pixel_centre_is_watertight():
    # Eight triangles around a vertex sitting exactly on a pixel centre; every internal edge runs through
    # pixel centres. Each pixel inside the square must be drawn (no holes, no speckles in a mask).
    h = w = 16
    c = torch.tensor([1 / 16, 1 / 16], dtype=torch.float64)  # the centre of pixel (8, 8)
    ring = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=torch.float64)
    verts = torch.cat([c[None], c + 0.7 * ring])
    tri = torch.tensor([[0, 1 + k, 1 + (k + 1) % 8] for k in range(8)])
    pos = _clip(verts, torch.zeros(9, dtype=torch.float64), torch.ones(9, dtype=torch.float64))
    rast = rasterize(pos, tri, (h, w))[0]
    x, y = _pixel_centres(h, w)
    expected = ((x - c[0]).abs() < 0.7) & ((y - c[1]).abs() < 0.7)
    assert torch.equal(rast[..., 3] > 0, expected)
    assert expected.sum() == 121
    # The quad split along a diagonal through pixel centres: same, and both halves get pixels.
    quad = torch.tensor([[2, 4, 6], [2, 6, 8]])  # corners (1,1), (-1,1), (-1,-1), (1,-1): diagonal 2-6
    rq = rasterize(pos, quad, (h, w))[0, ..., 3]
    assert torch.equal(rq > 0, expected)
    assert (rq == 1).sum() > 40 and (rq == 2).sum() > 40


def test_perspective_interpolation_matches_ray_plane_intersection():
    cams = orbit_cameras(torch.tensor([30.0]), torch.tensor([20.0]), 2.5, 50.0, 32, 24)
    cams = Cameras(cams.c2w.double(), cams.fx.double(), cams.fy.double(), cams.cx.double(), cams.cy.double(), 32, 24)
    verts = torch.tensor([[-0.6, -0.3, -0.2], [0.7, 0.1, 0.0], [0.0, 0.4, 0.8]], dtype=torch.float64)
    pos = cams.project(verts)
    rast = rasterize(pos, TRI, (24, 32))
    world = interpolate(verts, rast, TRI)[0]
    covered = rast[0, ..., 3] == 1
    assert covered.sum() > 60
    o, d = cams.rays()
    n = torch.linalg.cross(verts[1] - verts[0], verts[2] - verts[0])
    t = ((verts[0] - o[0]) @ n) / (d[0] @ n)
    hit = o[0] + t[..., None] * d[0]  # [H, W, 3]
    assert torch.allclose(world[covered], hit[covered], atol=1e-9)
    # The z channel is the NDC depth of the visible surface point.
    clip = cams.project(hit[covered])[0]
    assert torch.allclose(rast[0, ..., 2][covered], clip[:, 2] / clip[:, 3], atol=1e-9)


def test_nearer_triangle_wins_in_either_order_and_behind_camera_is_skipped():
    a = torch.tensor([[-0.9, -0.9], [0.6, -0.8], [-0.2, 0.7]], dtype=torch.float64)
    b = torch.tensor([[-0.5, 0.8], [0.9, 0.9], [0.3, -0.6]], dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    near, far = _clip(a, 0.2 * one, one), _clip(b, 0.5 * one, 2 * one)
    both = _inside(a, 16, 16) & _inside(b, 16, 16)
    assert both.sum() > 5
    for order in ((near, far), (far, near)):
        pos = torch.cat(order)
        rast = rasterize(pos, torch.tensor([[0, 1, 2], [3, 4, 5]]), (16, 16))[0]
        near_id = 1 if order[0] is near else 2
        assert (rast[..., 3][both] == near_id).all()
        assert torch.allclose(rast[..., 2][both], torch.full_like(rast[..., 2][both], 0.2))
    # Equal depth: the lower triangle id wins (deterministic).
    tie = rasterize(torch.cat([_clip(b, 0.3 * one, one), _clip(a, 0.3 * one, one)]),
                    torch.tensor([[0, 1, 2], [3, 4, 5]]), (16, 16))[0]
    assert (tie[..., 3][both] == 1).all()
    # A vertex behind the camera (w < 0) or a triangle beyond the far plane draws nothing.
    behind = _clip(a, 0.2 * one, torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert (rasterize(behind, TRI, (16, 16))[..., 3] == 0).all()
    assert (rasterize(_clip(a, 1.5 * one, one), TRI, (16, 16))[..., 3] == 0).all()


def _interp_loss(pos, attr, mask, grad_out):
    rast = rasterize(pos, TRI, (12, 14))
    return (interpolate(attr, rast, TRI) * mask * grad_out).sum()


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    ndc = torch.tensor([[-0.8, -0.7], [0.85, -0.4], [0.0, 0.9]], dtype=torch.float64)
    pos = _clip(ndc, torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64),
                torch.tensor([1.0, 2.0, 1.4], dtype=torch.float64)).requires_grad_(True)
    attr = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        rast = rasterize(pos, TRI, (12, 14))
        bary = torch.stack([rast[..., 0], rast[..., 1], 1 - rast[..., 0] - rast[..., 1]])
        mask = ((rast[..., 3] == 1) & (bary.amin(0) > 0.05))[..., None].double()  # well inside the triangle
    assert mask.sum() > 20
    grad_out = torch.randn(1, 12, 14, 2, generator=g, dtype=torch.float64)
    loss = _interp_loss(pos, attr, mask, grad_out)
    gp, ga = torch.autograd.grad(loss, (pos, attr))
    assert gp.abs().max() > 1e-3
    eps = 1e-6
    for tensor, grad in ((pos, gp), (attr, ga)):
        fd = torch.zeros_like(tensor)
        with torch.no_grad():
            for i in range(tensor.numel()):
                tensor.view(-1)[i] += eps
                hi = _interp_loss(pos, attr, mask, grad_out)
                tensor.view(-1)[i] -= 2 * eps
                lo = _interp_loss(pos, attr, mask, grad_out)
                tensor.view(-1)[i] += eps
                fd.view(-1)[i] = (hi - lo) / (2 * eps)
        assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-7)


def _area_px(ndc, h, w):
    """Exact area in pixels of a 2D NDC triangle ``[3, 2]``."""
    p = (ndc + 1) * torch.tensor([w / 2, h / 2], dtype=ndc.dtype)
    return 0.5 * torch.abs((p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[1, 1] - p[0, 1]) * (p[2, 0] - p[0, 0]))


def _aa_mask(pos, h, w, weights):
    rast = rasterize(pos, TRI, (h, w))
    mask = (rast[..., 3:] > 0).to(pos.dtype)
    return (antialias(mask, rast, pos, TRI) * weights).sum()


@pytest.mark.parametrize("ndc", [[[-0.71, -0.63], [0.68, -0.27], [-0.12, 0.74]],
                                 [[0.52, 0.81], [-0.83, 0.33], [0.22, -0.77]]])
def test_antialias_coverage_and_silhouette_gradients(ndc):
    h, w = 40, 48
    ndc = torch.tensor(ndc, dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    pos = _clip(ndc, 0.3 * one, one).requires_grad_(True)
    # Total antialiased coverage is the true area (the plain mask is only approximately so).
    with torch.no_grad():
        rast = rasterize(pos, TRI, (h, w))
        mask = (rast[..., 3:] > 0).double()
        smooth = antialias(mask, rast, pos, TRI)[0, ..., 0]
    area = _area_px(ndc, h, w)
    assert abs(float(smooth.sum()) / float(area) - 1) < 0.02
    # Per pixel, the antialiased mask is close to the true coverage (8x8 supersampled), far closer than the
    # plain mask.
    s = 8
    cover = _inside(ndc, h * s, w * s).double().view(h, s, w, s).mean((1, 3))
    err_aa, err_plain = (smooth - cover).abs().sum(), (mask[0, ..., 0] - cover).abs().sum()
    assert err_aa < 0.3 * err_plain
    # Weight each pixel by 1 + x / W: the exact quantity is the weight integrated over the triangle, i.e.
    # area * (1 + centroid_x / W). Moving a silhouette vertex changes it; the gradient must follow.
    weights = 1 + torch.arange(w, dtype=torch.float64)[None, None, :, None] / w

    def exact(n):
        return _area_px(n, h, w) * (1 + ((n[:, 0].mean() + 1) * w / 2 - 0.5) / w)

    total = _aa_mask(pos, h, w, weights)
    grad = torch.autograd.grad(total, pos)[0]
    for v in range(3):
        for axis in range(2):
            step = torch.zeros_like(ndc)
            step[v, axis] = 1e-4
            fd = float((exact(ndc + step) - exact(ndc - step)) / 2e-4)
            assert abs(fd) > 1.0
            assert abs(float(grad[v, axis]) - fd) < 0.3 * abs(fd), (v, axis, float(grad[v, axis]), fd)


def test_antialias_moves_a_silhouette_vertex_outward():
    # A mask loss that wants more coverage pushes the rightmost vertex to the right (gradient of -sum < 0).
    ndc = torch.tensor([[-0.5, -0.5], [0.43, 0.05], [-0.4, 0.6]], dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    pos = _clip(ndc, 0.3 * one, one).requires_grad_(True)
    total = _aa_mask(pos, 24, 24, torch.ones(1, 24, 24, 1, dtype=torch.float64))
    (-total).backward()
    assert pos.grad[1, 0] < 0 and pos.grad[1, 1].abs() < pos.grad[1, 0].abs()
    # Colour gradients are redistributed only across the silhouette: pixels next to an edge, nowhere else.
    color = torch.zeros(1, 24, 24, 3, dtype=torch.float64, requires_grad=True)
    rast = rasterize(pos.detach(), TRI, (24, 24))
    antialias(color, rast, pos.detach(), TRI).sum().backward()
    changed = (color.grad[0, ..., 0] - 1).abs() > 1e-9
    cov = rast[0, ..., 3] > 0
    edge = torch.zeros_like(cov)
    edge[:, :-1] |= cov[:, :-1] != cov[:, 1:]
    edge[:, 1:] |= cov[:, :-1] != cov[:, 1:]
    edge[:-1] |= cov[:-1] != cov[1:]
    edge[1:] |= cov[:-1] != cov[1:]
    assert changed.sum() > 10 and not (changed & ~edge).any()


def test_texture_lookup_at_texel_centres_and_gradients():
    g = torch.Generator().manual_seed(1)
    tex = torch.rand(2, 4, 5, 3, generator=g, dtype=torch.float64)
    r, c = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    uv = torch.stack([(c + 0.5) / 5, (r + 0.5) / 4], -1).double()[None].expand(2, -1, -1, -1)
    assert torch.allclose(texture(tex, uv), tex, atol=1e-12)
    # Clamped at the borders; a shared [Ht, Wt, C] texture broadcasts over the batch.
    far = torch.tensor([[[[-0.5, -0.5], [1.5, 1.5]]]], dtype=torch.float64)
    out = texture(tex[0], far)
    assert torch.allclose(out[0, 0, 0], tex[0, 0, 0]) and torch.allclose(out[0, 0, 1], tex[0, -1, -1])
    uv_r = (0.1 + 0.8 * torch.rand(2, 3, 3, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    tex_r = tex.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(texture, (tex_r, uv_r), eps=1e-6, atol=1e-6)


def test_interpolate_broadcasts_and_bad_inputs_raise():
    ndc = torch.tensor([[-0.8, -0.7], [0.85, -0.4], [0.0, 0.9]])
    pos = _clip(ndc, torch.full((3,), 0.1), torch.ones(3))
    rast = rasterize(pos[None].expand(2, -1, -1), TRI, (8, 8))
    out = interpolate(torch.eye(3), rast, TRI)
    assert out.shape == (2, 8, 8, 3)
    assert torch.allclose(out.sum(-1), (rast[..., 3] > 0).float(), atol=1e-5)
    with pytest.raises(ValueError, match="pos_clip"):
        rasterize(pos[:, :3], TRI, (8, 8))
    with pytest.raises(ValueError, match="int32 or int64"):
        rasterize(pos, TRI.float(), (8, 8))
    with pytest.raises(ValueError, match="outside"):
        rasterize(pos, TRI + 1, (8, 8))
    with pytest.raises(ValueError, match="attr has batch"):
        interpolate(torch.zeros(3, 3, 2), rast, TRI)
    with pytest.raises(ValueError, match="uv"):
        texture(torch.zeros(4, 4, 3), torch.zeros(1, 2, 2))
    assert isinstance(raster.available(), bool)


def test_chunked_rasterisation_matches_single_pass():
    # A random overlapping soup rasterised in chunks of a few (triangle, pixel) pairs gives the same buffer.
    g = torch.Generator().manual_seed(3)
    pos = torch.cat([torch.rand(60, 2, generator=g) * 2.4 - 1.2, torch.rand(60, 1, generator=g) * 1.8 - 0.9,
                     0.5 + torch.rand(60, 1, generator=g)], 1)
    pos[:, :3] *= pos[:, 3:]
    tri = torch.randint(0, 60, (40, 3), generator=g)
    full = raster.rasterize_reference(pos, tri, (17, 23))
    assert (full[..., 3] > 0).float().mean() > 0.5 and len(full[..., 3].unique()) > 10
    for max_pairs in (29, 101):
        assert torch.equal(raster.rasterize_reference(pos, tri, (17, 23), max_pairs=max_pairs), full)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 3])
def test_cpu_visibility_matches_reference_bitwise(dtype, threads, monkeypatch):
    monkeypatch.setenv("DREAMSMITH_KERNELS", "")
    if cpu_ops() is None:
        pytest.skip("no C++ CPU kernels here")
    g = torch.Generator().manual_seed(5)
    # Three views of a random soup with shared edges (a fan) and triangles crossing the near plane.
    pos = torch.cat([torch.rand(3, 80, 2, generator=g) * 2.4 - 1.2, torch.rand(3, 80, 1, generator=g) * 2.2 - 1.1,
                     0.3 + torch.rand(3, 80, 1, generator=g)], 2).to(dtype)
    pos[..., :3] *= pos[..., 3:]
    pos[1, 5, 3] = -0.5  # behind the camera
    tri = torch.cat([torch.randint(0, 80, (70, 3), generator=g), torch.tensor([[70, i, i + 1] for i in range(71, 79)])])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for b in (pos, pos[:1]):  # one image: split into row bands across threads
            p = b.clone().requires_grad_()
            fast = raster.rasterize_cpu(p, tri, (29, 37))
            ref = raster.rasterize_reference(b, tri, (29, 37))
            assert (fast[..., 3] > 0).float().mean() > 0.3
            assert torch.equal(fast, ref.detach())
            fast[..., :2].sum().backward()
            assert p.grad is not None and bool(p.grad.abs().sum() > 0)
    finally:
        torch.set_num_threads(old)
