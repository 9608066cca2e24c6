"""Fast paths against their references, side by side in one run: each kernel, one whole coarse step and one whole
fine (mesh-stage) step, at draft and standard sizes; optionally ``generate --preset draft`` end to end.

For every row the fast path and the reference (``DREAMSMITH_KERNELS=reference``, switched inside this process)
run alternately, ``--repeats`` times each after a warm-up; the table shows the median times, their ratio, and the
peak memory of each (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set size above
its level before the row, reset per measurement through ``/proc/self/clear_refs``; ``n/a`` elsewhere).

Usage::

    python scripts/bench.py [--device cpu|cuda] [--sizes draft,standard] [--repeats 3] [--threads N]
        [--generate] [--model assets/demo_prior]

``--generate`` also times ``python -m dreamsmith generate --preset draft`` with the toy prior, fast then
reference, in child processes (several minutes on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "assets" / "demo_prior"


# ------------------------------------------------------------------------------------------------ measuring


@contextlib.contextmanager
def kernels(mode: str):
    """Run the block with ``DREAMSMITH_KERNELS=mode`` (``""``: fast paths)."""
    old = os.environ.get("DREAMSMITH_KERNELS")
    os.environ["DREAMSMITH_KERNELS"] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DREAMSMITH_KERNELS", None)
        else:
            os.environ["DREAMSMITH_KERNELS"] = old


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Peak memory of one measurement on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.ok = _reset_peak()
            self.base = _rss_kb("VmRSS") or 0

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        hwm = _rss_kb("VmHWM")
        return None if not self.ok or hwm is None else max(0, hwm - self.base) / 1024


def measure(fn: Callable[[], None], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up, and the largest peak memory (MB)."""
    meter = Meter(device)
    fn()
    times, peaks = [], []
    for _ in range(repeats):
        meter.start()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        peaks.append(meter.peak_mb())
    known = [p for p in peaks if p is not None]
    return statistics.median(times), (max(known) if known else None)


def side_by_side(name: str, make: Callable[[], Callable[[], None]], device: torch.device, repeats: int,
                 extra: dict[str, Callable[[], Callable[[], None]]] | None = None) -> dict:
    """Time ``make()``'s closure with the fast paths and with the references (each built under its mode)."""
    row = {"name": name}
    for label, mode in (("fast", ""), ("reference", "reference")):
        with kernels(mode):
            row[label] = measure(make(), device, repeats)
    for label, fn in (extra or {}).items():
        row[label] = measure(fn(), device, repeats)
    print(_format(row), flush=True)
    return row


def _format(row: dict) -> str:
    def mem(v):
        return "n/a" if v is None else f"{v:8.1f}"

    (tf, mf), (tr, mr) = row["fast"], row["reference"]
    extra = "".join(f"  [{k}: {v[0] * 1e3:.1f} ms]" for k, v in row.items() if k not in ("name", "fast", "reference"))
    return (f"{row['name']:<62} {tf * 1e3:10.1f} {tr * 1e3:10.1f} {tr / tf:7.2f}x {mem(mf):>9} {mem(mr):>9}"
            + extra)


HEADER = (f"{'measurement':<62} {'fast ms':>10} {'ref ms':>10} {'ref/fast':>8} {'fast MB':>9} {'ref MB':>9}")


# ------------------------------------------------------------------------------------------------ kernels

SIZES = {
    # hash grid (levels, log2 T, base, finest), rays (views, px, samples/ray, occupancy res), mesh (dmtet res, px)
    "draft": {"grid": (6, 14, 8, 96), "rays": (4, 32, 64, 32), "mesh": (32, 64)},
    "standard": {"grid": (16, 19, 16, 2048), "rays": (4, 64, 512, 128), "mesh": (128, 512)},
}


def bench_hashgrid(size: str, device: torch.device, repeats: int) -> dict:
    from dreamsmith.kernels.hashgrid import hash_encode, hash_encode_chunked, level_resolutions

    levels, log2, base, finest = SIZES[size]["grid"]
    g = torch.Generator().manual_seed(0)
    n = 2**18
    x = torch.rand(n, 3, generator=g).to(device)
    table = (torch.randn(levels, 2**log2, 2, generator=g) * 0.1).to(device).requires_grad_()
    res = level_resolutions(levels, base, finest)
    up = torch.randn(n, levels * 2, generator=g).to(device)

    def make(fn=hash_encode):
        def run():
            table.grad = None
            (fn(x, table, res, log2) * up).sum().backward()
        return run

    extra = {"chunked PyTorch": lambda: make(hash_encode_chunked)} if device.type == "cpu" else None
    return side_by_side(f"hash grid fwd+bwd, 2^18 pts, {size} ({levels} lv, 2^{log2})", make, device, repeats,
                        extra)


def bench_march(size: str, device: torch.device, repeats: int) -> dict:
    from dreamsmith.core.render.volume import ray_aabb
    from dreamsmith.core.scene.cameras import orbit_cameras
    from dreamsmith.kernels.march import composite, march_samples

    views, px, n_s, occ_res = SIZES[size]["rays"]
    g = torch.Generator().manual_seed(0)
    cams = orbit_cameras(torch.rand(views, generator=g) * 360, torch.rand(views, generator=g) * 40, 2.0, 40.0, px)
    o, d = (t.reshape(-1, 3).to(device) for t in cams.rays())
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    near, far = ray_aabb(o, d, bbox)
    hit = far > near
    o, d, near, far = o[hit], d[hit], near[hit].clamp_min(0), far[hit]
    idx = torch.stack(torch.meshgrid(*[torch.arange(occ_res)] * 3, indexing="ij"), -1).float()
    mask = (((idx + 0.5) / occ_res * 2 - 1).norm(dim=-1) < 0.6).to(device)  # a ball of occupied cells
    step = float((bbox[1] - bbox[0]).norm()) / n_s
    u = torch.rand(o.shape[0], n_s, generator=g).to(device)

    def make():
        def run():
            ray, _, t, x = march_samples(o, d, near, far, u, step, n_s, mask, bbox)
            sigma = (20.0 * (1.0 - x.norm(dim=-1) / 0.6).clamp_min(0)).requires_grad_()
            w, acc = composite(sigma * step, ray, torch.zeros(o.shape[0], device=device))
            ((w * t).sum() + acc.sum()).backward()
        return run

    return side_by_side(f"ray march + composite fwd+bwd, {size} ({o.shape[0]} rays x {n_s})", make, device,
                        repeats)


def bench_raster(size: str, device: torch.device, repeats: int) -> dict:
    from dreamsmith.core.geometry.dmtet import DMTetConfig, DMTetGeometry
    from dreamsmith.core.scene.cameras import orbit_cameras
    from dreamsmith.kernels.raster import interpolate, rasterize

    res, px = SIZES[size]["mesh"]
    geo = DMTetGeometry(DMTetConfig(resolution=res), torch.tensor([[-1.0] * 3, [1.0] * 3])).to(device)
    geo.init_from_sdf(lambda p: p.norm(dim=-1) - 0.6 - 0.05 * torch.sin(8 * p[:, 0]))
    with torch.no_grad():
        verts, faces = geo()
    verts = verts.detach().requires_grad_()
    cams = orbit_cameras(torch.tensor([0.0, 90.0, 180.0, 270.0]), torch.tensor([15.0, 30.0, 0.0, 45.0]), 2.5, 40.0,
                         px).to(device)

    def make():
        def run():
            clip = cams.project(verts)
            rast = rasterize(clip, faces, (px, px))
            interpolate(verts, rast, faces).square().sum().backward()
        return run

    return side_by_side(f"rasterise + interpolate fwd+bwd, {size} ({faces.shape[0]} tris, 4x{px}^2)", make, device,
                        repeats)


# ------------------------------------------------------------------------------------------------ whole steps


def _prior(model: str, device: torch.device):
    from dreamsmith.core.jobs.generate import generate_config, make_guidance
    from dreamsmith.core.priors.models import load_prior

    cfg = generate_config("draft", {"coarse_model": {"model": model}})
    prior = load_prior(cfg.coarse_model, device)
    return make_guidance(prior, "a red cube", "", cfg.prompt, cfg.coarse_guidance)


def _step_config(size: str, model: str):
    """The draft preset, or the draft preset with the standard preset's field, renders and grids."""
    from dreamsmith.core.jobs.generate import generate_config

    over: dict = {"coarse_model": {"model": model}}
    if size == "standard":
        std = {"levels": 16, "log2": 19, "base": 16, "finest": 2048}
        over |= {"coarse": {"field": {"grid": {"n_levels": std["levels"], "log2_hashmap_size": std["log2"],
                                               "base_resolution": std["base"], "finest_resolution": std["finest"]}},
                            "occupancy": {"resolution": 128}, "volume": {"n_samples_per_ray": 512}},
                 "coarse_sds": {"render_size": 64},
                 "mesh": {"render_size": 512, "dmtet": {"resolution": 128}}}
    return generate_config("draft", over)


def _stage_setup(size: str, model: str, device: torch.device, steps: int):
    """Config, step count (4 at draft, 1 at standard unless given), guidance and scene box of a whole-step row."""
    cfg = _step_config(size, model)
    steps = steps or (4 if size == "draft" else 1)
    cfg.coarse.steps = cfg.mesh.steps = steps
    r = cfg.scene_radius
    return cfg, steps, _prior(model, device), torch.tensor([[-r] * 3, [r] * 3])


def bench_coarse_step(size: str, device: torch.device, repeats: int, model: str, steps: int = 0) -> dict:
    from dreamsmith.core.runtime.events import StageReporter
    from dreamsmith.core.stages.coarse import train_coarse
    from dreamsmith.core.stages.objectives import ScoreDistillation

    cfg, steps, guidance, bbox = _stage_setup(size, model, device, steps)

    def make():
        def run():
            torch.manual_seed(0)
            train_coarse(cfg.coarse, ScoreDistillation(guidance, cfg.coarse_sds), bbox, device,
                         torch.Generator().manual_seed(0), StageReporter("coarse", steps, None, None))
        return run

    return side_by_side(f"coarse SDS, {steps} whole steps, {size}", make, device, repeats)


def bench_fine_step(size: str, device: torch.device, repeats: int, model: str, steps: int = 0) -> dict:
    from dreamsmith.core.geometry.dmtet import DMTetGeometry
    from dreamsmith.core.runtime.events import StageReporter
    from dreamsmith.core.scene.field import NeRFField
    from dreamsmith.core.stages.mesh import train_mesh
    from dreamsmith.core.stages.objectives import MeshScoreDistillation

    cfg, steps, guidance, bbox = _stage_setup(size, model, device, steps)
    r = cfg.scene_radius

    def make():
        torch.manual_seed(0)
        field = NeRFField(cfg.coarse.field, bbox).to(device)
        geo = DMTetGeometry(cfg.mesh.dmtet, bbox.to(device)).to(device)
        geo.init_from_sdf(lambda p: p.norm(dim=-1) - 0.5 * r)
        state = {k: v.clone() for k, v in geo.state_dict().items()}

        def run():
            geo.load_state_dict(state)
            train_mesh(cfg.mesh, MeshScoreDistillation(guidance, cfg.mesh.render_size, cfg=cfg.mesh_sds), field, geo,
                       torch.Generator().manual_seed(0), StageReporter("mesh", steps, None, None))
        return run

    return side_by_side(f"mesh-stage SDS, {steps} whole steps, {size}", make, device, repeats)


# ------------------------------------------------------------------------------------------------ end to end


def bench_generate(model: str, threads: int | None) -> None:
    print("\ngenerate --preset draft, end to end (child processes, fast then reference):", flush=True)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, mode in (("fast", ""), ("reference", "reference")):
            env = dict(os.environ, DREAMSMITH_KERNELS=mode)
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            cmd = [sys.executable, "-m", "dreamsmith", "generate", "--prompt", "a red cube", "--model", model,
                   "--preset", "draft", "--seed", "0", "--out", str(Path(tmp) / f"{label}.glb"), "--device", "cpu",
                   "--quiet"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            times[label] = time.perf_counter() - t0
            print(f"  {label:<10} {times[label]:8.1f} s", flush=True)
    print(f"  reference / fast = {times['reference'] / times['fast']:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="draft,standard")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--model", default=str(TOY), help="prior for the whole-step rows (a pixel-space prior)")
    ap.add_argument("--only", default="", help="comma-separated subset: hashgrid,march,raster,coarse,fine")
    ap.add_argument("--generate", action="store_true", help="also time generate --preset draft end to end")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from dreamsmith.kernels.cpu_build import reason

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"C++ CPU kernels: {reason() or 'built'}")
    print(HEADER)
    only = set(filter(None, args.only.split(",")))
    for size in filter(None, args.sizes.split(",")):
        for name, fn in (("hashgrid", bench_hashgrid), ("march", bench_march), ("raster", bench_raster)):
            if not only or name in only:
                fn(size, device, args.repeats)
        if not only or "coarse" in only:
            bench_coarse_step(size, device, args.repeats, args.model)
        if not only or "fine" in only:
            bench_fine_step(size, device, args.repeats, args.model)
    if args.generate:
        bench_generate(args.model, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
