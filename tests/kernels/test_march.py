"""Ray marching and compositing: the C++ fast path against the PyTorch references (outputs and gradients)."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from dreamsmith.kernels.cpu_build import cpu_ops, reason
from dreamsmith.kernels.march import composite, composite_reference, march_samples, march_samples_reference


def _have_compiler() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(scope="module")
def ops():
    ops = cpu_ops()
    if ops is None:
        pytest.skip(f"no C++ CPU kernels: {reason()}")
    return ops


def test_cpu_kernels_build_where_a_compiler_is_present(monkeypatch):
    monkeypatch.delenv("DREAMSMITH_KERNELS", raising=False)
    if not _have_compiler():
        pytest.skip("no C++ compiler or ninja here: the references run instead")
    assert cpu_ops() is not None, reason()


def _rays(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, -2.5, 0.3])
    d = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, 0.0]) + 0.4 * torch.randn(n, 3, generator=g), dim=-1)
    bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    from dreamsmith.core.render.volume import ray_aabb

    near, far = ray_aabb(o, d, bbox)
    hit = far > near
    return o[hit], d[hit], near[hit].clamp_min(0), far[hit], bbox, g


@pytest.mark.parametrize("jitter", [False, True])
@pytest.mark.parametrize("with_grid", [False, True])
def test_march_matches_reference(ops, jitter, with_grid):
    o, d, near, far, bbox, g = _rays(500, 0)
    n_s = 96
    step = float((bbox[1] - bbox[0]).norm()) / n_s
    u = torch.rand(o.shape[0], n_s, generator=g) if jitter else None
    mask = None
    if with_grid:
        r = 16
        idx = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), -1).float()
        mask = ((idx + 0.5) / r * 2 - 1).norm(dim=-1) < 0.7  # a ball of occupied cells
        mask[3, 12, 5] = True  # and a stray cell
    fast = march_samples(o, d, near, far, u, step, n_s, mask, bbox)
    ref = march_samples_reference(o, d, near, far, u, step, n_s, mask, bbox)
    assert fast[0].numel() > 1000
    if with_grid:
        assert fast[0].numel() < o.shape[0] * n_s // 2  # the grid did skip samples
    for a, b in zip(fast, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)  # same float operations: bitwise equal


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_composite_matches_reference_with_gradients(ops, dtype):
    g = torch.Generator().manual_seed(3)
    n_rays = 40
    counts = torch.randint(0, 30, (n_rays,), generator=g)
    ray = torch.repeat_interleave(torch.arange(n_rays), counts)
    tau0 = (torch.rand(ray.shape[0], generator=g) * 0.6).to(dtype)
    acc0 = (torch.rand(n_rays, generator=g) * 0.5).to(dtype)
    gw = torch.randn(ray.shape[0], generator=g).to(dtype)
    ga = torch.randn(n_rays, generator=g).to(dtype)
    results = []
    for fn in (composite, composite_reference):
        tau, acc = tau0.clone().requires_grad_(), acc0.clone().requires_grad_()
        w, acc_new = fn(tau, ray, acc)
        ((w * gw).sum() + (acc_new * ga).sum()).backward()
        results.append((w.detach(), acc_new.detach(), tau.grad, acc.grad))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    # The weights of a ray sum to 1 - exp(-sum tau) (from its starting depth on).
    w, acc_new = results[0][:2]
    per_ray = torch.zeros(n_rays, dtype=dtype).index_add(0, ray, w)
    torch.testing.assert_close(per_ray, torch.exp(-acc0) - torch.exp(-acc_new), atol=tol * 10, rtol=tol * 10)


def test_composite_gradcheck(ops):
    g = torch.Generator().manual_seed(4)
    ray = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3, 3])
    tau = (torch.rand(ray.shape[0], generator=g, dtype=torch.float64) * 0.8).requires_grad_()
    acc = (torch.rand(5, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, a: composite(t, ray, a), (tau, acc))


def test_renders_agree_with_forced_references(monkeypatch, ops):
    from dreamsmith.core.render.volume import VolumeConfig, render_image
    from dreamsmith.core.scene.cameras import orbit_cameras
    from dreamsmith.core.scene.field import FieldConfig, NeRFField
    from dreamsmith.core.scene.occupancy import OccupancyConfig, OccupancyGrid

    torch.manual_seed(0)
    bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    cfg = FieldConfig()
    cfg.grid.n_levels, cfg.grid.log2_hashmap_size = 6, 12
    cfg.blob_density = 8.0
    field = NeRFField(cfg, bbox)
    occ = OccupancyGrid(OccupancyConfig(resolution=16), bbox)
    occ.update(field, step=0, force=True, generator=torch.Generator().manual_seed(0))
    cams = orbit_cameras(torch.tensor([0.0, 130.0]), torch.tensor([15.0, 40.0]), 2.5, 40.0, 24)
    vol = VolumeConfig(n_samples_per_ray=96, march_block=32)
    outs = []
    for mode in ("", "reference"):
        monkeypatch.setenv("DREAMSMITH_KERNELS", mode)
        field.zero_grad()
        out = render_image(field, cams, vol, occupancy=occ, shading="lambertian", perturb=True,
                           generator=torch.Generator().manual_seed(1))
        out["rgb"].square().mean().backward()
        outs.append((out["rgb"].detach(), out["opacity"].detach(), out["n_samples"],
                     [p.grad.clone() for p in field.parameters()]))
    (rgb_a, op_a, n_a, g_a), (rgb_b, op_b, n_b, g_b) = outs
    assert n_a == n_b > 0
    torch.testing.assert_close(rgb_a, rgb_b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(op_a, op_b, atol=1e-5, rtol=1e-4)
    for a, b in zip(g_a, g_b, strict=True):
        scale = max(float(b.abs().max()), 1e-12)
        assert float((a - b).abs().max()) / scale < 1e-3
    assert math.isfinite(float(rgb_a.sum()))


def test_cpu_kernels_build_without_openmp_where_the_compiler_has_none(monkeypatch, tmp_path):
    import torch.utils.cpp_extension as ext

    from dreamsmith.kernels import cpu_build

    assert cpu_build.compiler_flags("linux")[0][0] == ["-O3", "-fopenmp", "-ffp-contract=off"]
    assert all("-fopenmp" not in c for c, _ in cpu_build.compiler_flags("darwin"))
    assert all(not f.startswith("-f") for c, _ in cpu_build.compiler_flags("win32") for f in c)
    tried = []

    def load(**kwargs):  # a compiler without OpenMP, as Apple clang
        tried.append(kwargs["extra_cflags"])
        if "-fopenmp" in kwargs["extra_cflags"]:
            raise RuntimeError("clang: error: unsupported option '-fopenmp'")
        (Path(kwargs["build_directory"]) / f"{kwargs['name']}.so").write_bytes(b"library")

    monkeypatch.setattr(ext, "load", load)
    monkeypatch.setattr(cpu_build.sys, "platform", "linux")
    built = cpu_build._compile(tmp_path)
    assert built.read_bytes() == b"library" and len(tried) == 2 and "-fopenmp" not in tried[1]
