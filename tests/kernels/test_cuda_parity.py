"""On a CUDA device only (skipped elsewhere; CI has none): each kernel's CUDA path against the CPU path on the
same inputs, outputs and gradients. On CUDA the kernels run their PyTorch paths (or tiny-cuda-nn / nvdiffrast
where the caller installed them); on the CPU the C++ kernels where they build, else the same PyTorch paths."""

import pytest
import torch

from dreamsmith.core.render.volume import ray_aabb
from dreamsmith.core.scene.cameras import orbit_cameras
from dreamsmith.kernels.antialias import antialias
from dreamsmith.kernels.hashgrid import hash_encode, level_resolutions
from dreamsmith.kernels.march import composite, march_samples
from dreamsmith.kernels.raster import interpolate, rasterize
from dreamsmith.kernels.texture import texture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _both(fn, *inputs: torch.Tensor):
    """``fn`` on CPU copies and on CUDA copies of ``inputs`` (leaves that require grad where the input does)."""
    out = {}
    for dev in ("cpu", "cuda"):
        args = [t.detach().to(dev).requires_grad_(t.requires_grad) if t.is_floating_point() else t.to(dev)
                for t in inputs]
        out[dev] = (fn(*args), args)
    return out["cpu"], out["cuda"]


def test_hash_grid_forward_and_table_gradient():
    g = torch.Generator().manual_seed(0)
    res = level_resolutions(16, 16, 2048)
    table = (torch.randn(16, 2**15, 2, generator=g) * 0.1).requires_grad_()
    x = torch.rand(200_000, 3, generator=g)
    up = torch.randn(200_000, 32, generator=g)

    def run(xx, tt, uu):
        out = hash_encode(xx, tt, res.to(xx.device), 15)
        (out * uu).sum().backward()
        return out

    (a, (_, ta, _)), (b, (_, tb, _)) = _both(run, x, table, up)
    torch.testing.assert_close(b.cpu(), a.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tb.grad.cpu(), ta.grad, atol=1e-4, rtol=1e-4)


def test_march_and_composite():
    g = torch.Generator().manual_seed(1)
    n = 4000
    o = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, -2.5, 0.3])
    d = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, 0.0]) + 0.4 * torch.randn(n, 3, generator=g), dim=-1)
    bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    near, far = ray_aabb(o, d, bbox)
    near = near.clamp_min(0).where(far > near, far)
    u = torch.rand(n, 128, generator=g)
    idx = torch.stack(torch.meshgrid(*[torch.arange(32)] * 3, indexing="ij"), -1).float()
    mask = ((idx + 0.5) / 32 * 2 - 1).norm(dim=-1) < 0.7
    step = float((bbox[1] - bbox[0]).norm()) / 128

    def run(o, d, near, far, u, mask, bbox):
        ray, k, t, x = march_samples(o, d, near, far, u, step, 128, mask, bbox)
        tau = (x.norm(dim=-1) * 0.2).requires_grad_()
        acc = torch.zeros(o.shape[0], device=o.device, requires_grad=True)
        w, acc_out = composite(tau, ray, acc)
        ((w * torch.cos(3 * t)).sum() + acc_out.sum()).backward()
        return ray, k, t, w, acc_out, tau.grad, acc.grad

    (a, _), (b, _) = _both(run, o, d, near, far, u, mask, bbox)
    assert a[0].numel() > 10_000
    for name, x_cpu, x_gpu in zip(("ray", "k", "t", "w", "acc", "dtau", "dacc"), a, b, strict=True):
        if x_cpu.dtype == torch.int64:
            assert torch.equal(x_gpu.cpu(), x_cpu), name
        else:
            torch.testing.assert_close(x_gpu.detach().cpu(), x_cpu.detach(), atol=2e-5, rtol=1e-4, msg=name)


def test_raster_interpolate_texture_antialias_with_gradients():
    g = torch.Generator().manual_seed(2)
    # A closed UV sphere, seen from four sides.
    n_u, n_v = 24, 12
    th, ph = torch.meshgrid(torch.linspace(0.1, 3.04, n_v), torch.linspace(0, 6.2832, n_u + 1)[:-1], indexing="ij")
    verts = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3) * 0.8
    tri = []
    for i in range(n_v - 1):
        for j in range(n_u):
            a, b, c, e = i * n_u + j, i * n_u + (j + 1) % n_u, (i + 1) * n_u + j, (i + 1) * n_u + (j + 1) % n_u
            tri += [[a, c, b], [b, c, e]]
    tri = torch.tensor(tri)
    cams = orbit_cameras(torch.tensor([0.0, 80.0, 170.0, 260.0]), torch.tensor([20.0, -10.0, 45.0, 5.0]), 2.5,
                         45.0, 64)
    mvp = cams.world_to_clip()  # [B, 4, 4]
    uv = torch.rand(verts.shape[0], 2, generator=g)
    tex = torch.rand(1, 32, 32, 3, generator=g)

    def run(verts, uv, tex, mvp, tri):
        clip = torch.cat([verts, torch.ones_like(verts[:, :1])], 1) @ mvp.transpose(1, 2)
        rast = rasterize(clip, tri, (64, 64))
        uvs = interpolate(uv, rast, tri)
        col = texture(tex, uvs.clamp(0, 1)) * (rast[..., 3:] > 0)
        img = antialias(col, rast, clip, tri)
        img.sum().backward()
        return rast, img

    (a, ia), (b, ib) = _both(run, verts.requires_grad_(), uv.requires_grad_(), tex.requires_grad_(), mvp, tri)
    cover_a, cover_b = a[0][..., 3] > 0, b[0][..., 3].cpu() > 0
    assert cover_a.float().mean() > 0.2
    # A pixel centre within rounding of an edge may be covered on one device and not on the other (seen on an
    # H200: 3 of 16384 pixels); such a pixel differs fully, and antialiasing spreads it to a neighbour.
    assert (cover_a != cover_b).float().mean() < 1e-3
    off = (b[1].detach().cpu() - a[1].detach()).abs().amax(-1) > 1e-4
    assert off.float().mean() < 2e-3
    for x_cpu, x_gpu in zip(ia[:3], ib[:3], strict=True):
        err = (x_gpu.grad.cpu() - x_cpu.grad).norm() / x_cpu.grad.norm()
        assert x_cpu.grad.abs().sum() > 0 and err < 2e-2, err
