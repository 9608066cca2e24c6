"""Device choice and a job's seeding: the same seed gives the same result bit for bit on the CPU, also with more
than one thread (torch's accumulating index backward otherwise adds in a scheduling-dependent order)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from dreamsmith.core.runtime.device import resolve_device, seeded_job
from dreamsmith.core.runtime.errors import ResourceError


def _index_backward_digests(runs: int) -> set[str]:
    """Gradients of ``x[idx]`` with many indices per slot, big enough for torch's multi-threaded path."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=g, requires_grad=True)
    idx = torch.randint(0, 1000, (400_000,), generator=g)
    w = torch.randn(400_000, 4, generator=g)
    out = set()
    for _ in range(runs):
        x.grad = None
        (x[idx] * w).sum().backward()
        out.add(hashlib.sha256(x.grad.numpy().tobytes()).hexdigest())
    return out


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_cpu_job_accumulates_in_a_fixed_order_with_two_threads(two_threads):
    before = torch.are_deterministic_algorithms_enabled()
    with seeded_job(11, torch.device("cpu")) as gen:
        assert torch.are_deterministic_algorithms_enabled()
        assert len(_index_backward_digests(6)) == 1
        assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=torch.Generator().manual_seed(11)))
    assert torch.are_deterministic_algorithms_enabled() == before  # restored for whoever called the engine


def test_a_job_restores_the_callers_setting_when_it_fails():
    torch.use_deterministic_algorithms(False)
    with pytest.raises(RuntimeError, match="boom"), seeded_job(0, torch.device("cpu")):
        raise RuntimeError("boom")
    assert not torch.are_deterministic_algorithms_enabled()


def test_gpu_jobs_keep_torchs_fast_algorithms():
    """Bitwise equality is promised on the CPU only; on CUDA deterministic kernels cost speed (and warn)."""
    torch.use_deterministic_algorithms(False)
    with seeded_job(0, torch.device("cuda")):  # a device object only: nothing runs on it
        assert not torch.are_deterministic_algorithms_enabled()


def test_unknown_or_missing_devices_are_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ResourceError, match="Unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ResourceError, match="no CUDA GPU is available; use --device cpu"):
            resolve_device("cuda")
