"""Hash-grid encoding: the fast path and the autograd reference against a deliberately naive implementation."""

import pytest
import torch

from dreamsmith.kernels.cpu_build import cpu_ops
from dreamsmith.kernels.errors import KernelInputError
from dreamsmith.kernels.hashgrid import hash_encode, hash_encode_chunked, hash_encode_reference, level_resolutions

PRIMES = (1, 2654435761, 805459861)


def naive_hash_encode(x: torch.Tensor, table: torch.Tensor, resolutions: list[int], log2_table: int) -> torch.Tensor:
    """One level and one corner at a time, int64 arithmetic with an explicit uint32 wrap; autograd for the table."""
    t_size = 2**log2_table
    x = x.double().clamp(0, 1)
    outs = []
    for lvl, r in enumerate(resolutions):
        s = x * r
        cell = torch.minimum(torch.floor(s), torch.tensor(float(r - 1), dtype=torch.float64))
        frac = s - cell
        c = cell.long()
        level_out = torch.zeros(x.shape[0], table.shape[2], dtype=torch.float64)
        for corner in range(8):
            off = [(corner >> 2) & 1, (corner >> 1) & 1, corner & 1]
            ix, iy, iz = (c[:, a] + off[a] for a in range(3))
            if (r + 1) ** 3 <= t_size:
                row = ix + iy * (r + 1) + iz * (r + 1) ** 2
            else:
                hx, hy, hz = ((v * p) & 0xFFFFFFFF for v, p in zip((ix, iy, iz), PRIMES, strict=True))
                row = (hx ^ hy ^ hz) % t_size
            w = torch.ones(x.shape[0], dtype=torch.float64)
            for a in range(3):
                w = w * (frac[:, a] if off[a] else 1 - frac[:, a])
            level_out = level_out + w[:, None] * table[lvl][row].double()
        outs.append(level_out)
    return torch.cat(outs, dim=1)


# (resolutions, log2_table): T = 1024 rows, so a level is dense when (R + 1)^3 <= 1024, i.e. R <= 9.
CASES = {
    "dense": ([3, 9], 10),
    "hashed": ([17, 200], 10),
    "coarse-dense-fine-hashed": ([4, 9, 30, 1000], 10),
    "unsorted-levels": ([64, 2, 513, 5], 10),
    "uint32-wrap": ([2**20], 12),  # i * 2654435761 overflows 32 bits; the hash must wrap like uint32
}


def _points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g)
    x[:4] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [0.5, 0.25, 1.0]])  # box faces
    return x


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_table_gradient_match_naive(case, dtype):
    res, log2_t = CASES[case]
    if dtype == torch.float32 and max(res) > 1000:
        pytest.skip("float32 points cannot resolve 2**20 cells; the wrap case runs in float64")
    g = torch.Generator().manual_seed(1)
    table = torch.randn(len(res), 2**log2_t, 2, generator=g)
    x = _points(300, 2).to(dtype)
    resolutions = torch.tensor(res)
    upstream = torch.randn(x.shape[0], 2 * len(res), generator=g)
    # float32 points: x * R is rounded to ~6e-8 * R, so weights differ from the float64 naive by that much.
    tol = 1e-5 if dtype == torch.float64 else 2e-3

    t_naive = table.clone().requires_grad_()
    ref = naive_hash_encode(x, t_naive, res, log2_t)
    (ref * upstream.double()).sum().backward()

    for impl in (hash_encode, hash_encode_reference):
        t = table.clone().requires_grad_()
        out = impl(x, t, resolutions, log2_t)
        assert out.shape == (300, 2 * len(res)) and out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref.detach(), atol=tol, rtol=tol)
        (out * upstream).sum().backward()
        torch.testing.assert_close(t.grad, t_naive.grad, atol=max(tol, 1e-4), rtol=tol)


def test_chunked_fast_path_matches_reference(monkeypatch):
    import dreamsmith.kernels.hashgrid as hg

    monkeypatch.setattr(hg, "_CHUNK_POINT_LEVELS", 64)  # 16 points per chunk: many chunks and a ragged last one
    res = level_resolutions(4, 4, 64)
    table = torch.randn(4, 2**10, 2, requires_grad=True)
    x = _points(1000, 3)
    up = torch.randn(1000, 8)
    out = hash_encode_chunked(x, table, res, 10)
    (out * up).sum().backward()
    grad = table.grad.clone()
    table.grad = None
    ref = hash_encode_reference(x, table, res, 10)
    (ref * up).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, table.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpp_kernel_matches_both_pytorch_paths_and_is_deterministic(dtype):
    if cpu_ops() is None:
        pytest.skip("no C++ CPU kernels here")
    g = torch.Generator().manual_seed(7)
    res = level_resolutions(8, 8, 512)  # dense coarse levels, hashed fine ones
    table = (torch.randn(8, 2**12, 2, generator=g) * 0.1).to(dtype)
    x = _points(20000, 8).to(dtype)
    up = torch.randn(20000, 16, generator=g).to(dtype)
    outs = {}
    for name, fn in (("cpp", hash_encode), ("chunked", hash_encode_chunked), ("reference", hash_encode_reference)):
        t = table.clone().requires_grad_()
        out = fn(x, t, res, 12)
        (out * up).sum().backward()
        outs[name] = (out.detach(), t.grad)
    assert type(hash_encode(x, table.clone().requires_grad_(), res, 12).grad_fn).__name__ == "_HashEncodeCPUBackward"
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name in ("chunked", "reference"):
        torch.testing.assert_close(outs["cpp"][0], outs[name][0], atol=tol, rtol=tol)
        torch.testing.assert_close(outs["cpp"][1], outs[name][1], atol=tol * 10, rtol=tol * 10)
    threads = torch.get_num_threads()
    try:  # one level per thread in the backward: the same bits whatever the thread count
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            t = table.clone().requires_grad_()
            (hash_encode(x, t, res, 12) * up).sum().backward()
            results.append(t.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_encoding_is_continuous_across_cells():
    res = level_resolutions(6, 4, 256)
    table = torch.randn(6, 2**12, 2)
    x = _points(2000, 4)[4:].clamp(0.01, 0.99)
    step = torch.full_like(x, 1e-5)
    jump = (hash_encode(x + step, table, res, 12) - hash_encode(x, table, res, 12)).abs().max()
    # Finest level: 256 cells, features ~N(0,1): the slope is at most ~3 * 256 * |table| per unit of x.
    assert jump < 1e-5 * 3 * 256 * table.abs().max() * 1.01
    # A vertex of the finest level is approached from both sides: no jump at the cell boundary.
    vertex = torch.tensor([[100 / 256, 37 / 256, 201 / 256]])
    below, above = hash_encode(vertex - 1e-6, table, res, 12), hash_encode(vertex + 1e-6, table, res, 12)
    assert (below - above).abs().max() < 1e-2


def test_gradient_reaches_points_when_they_require_grad():
    res = torch.tensor([3, 40])
    table = torch.randn(2, 2**8, 2, dtype=torch.float64)
    x = torch.rand(16, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: hash_encode(p, table, res, 8), (x,))
    # Second derivatives (training through analytic normals): d/dtable of d/dx.
    t = table.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda p, tb: hash_encode(p, tb, res, 8), (x[:4], t))
    # The table-only fast path is used when x does not require grad: no graph to x.
    out = hash_encode(x.detach(), table.requires_grad_(), res, 8)
    assert out.requires_grad and out.grad_fn is not None


def test_bad_inputs_say_what_is_wrong():
    table = torch.zeros(2, 2**8, 2)
    with pytest.raises(KernelInputError, match=r"\[N, 3\]"):
        hash_encode(torch.rand(5, 2), table, torch.tensor([4, 8]), 8)
    with pytest.raises(KernelInputError, match="log2_table"):
        hash_encode(torch.rand(5, 3), table, torch.tensor([4, 8]), 9)
    with pytest.raises(KernelInputError, match="resolutions"):
        hash_encode(torch.rand(5, 3), table, torch.tensor([4, 8, 16]), 8)
    with pytest.raises(KernelInputError, match="integer"):
        hash_encode(torch.rand(5, 3), table, torch.tensor([4.0, 8.0]), 8)


def test_level_resolutions_grow_geometrically_from_base_to_finest():
    res = level_resolutions(16, 16, 2048)
    assert res[0] == 16 and res[-1] == 2048 and res.dtype == torch.int64
    ratios = res[1:].double() / res[:-1].double()
    assert torch.allclose(ratios, torch.full_like(ratios, 2 ** (7 / 15)), rtol=0.05)
