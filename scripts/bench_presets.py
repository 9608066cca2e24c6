"""Time and memory of a GPU preset at its real sizes, with full-size random-weight priors.

    python scripts/bench_presets.py --preset fast|standard|high [...] --device cpu|cuda --steps N
                                    [--pairing if+sd|sd|both] [--compare before]

The priors are the public architectures (``dreamsmith.eval.random_priors``, ``full``): Stable Diffusion 2.1-base
(UNet, x8 VAE) and DeepFloyd IF-I-XL stage I. Text embeddings have the real encoders' shapes (T5-XXL: 77 x 4096,
OpenCLIP ViT-H: 77 x 1024) but are random: the engine embeds once and releases the text encoder before any stage,
so the 4.7B-parameter T5 need not be built. Speed and memory do not depend on the weights.

For each stage it runs ``N`` steps of the engine's own loop at the preset's exact sizes (render size, views per
step, samples per ray, grids) and prints seconds per step, UNet calls per step, the projected stage time for the
preset's step count, and peak memory (``torch.cuda.max_memory_allocated`` on CUDA, resident memory on the CPU);
then the bake at the preset's texture size, and the projected total. The first coarse steps run before the
occupancy grid prunes anything, so the coarse projection is an upper bound. Each step's time is split into render,
VAE encode, UNet, backward and optimiser (the rest: everything else in the step).

``--compare before`` runs the standard preset as it was before it followed threestudio's recipe (:data:`BEFORE`:
4 views a step, 512 samples per ray, the scene-wide tet grid, ...) and the current one, in one process on the same
priors, and prints the ratios side by side. Several presets (``--preset standard high fast``) run one after the
other in one process on the same priors, each with the ratios of its figures to the first's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from dreamsmith.eval.random_priors import (
    IF_SCHEDULER,
    SD_SCHEDULER,
    build_tokenizer,
    build_unet,
    build_vae,
    text_encoder_config,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The standard preset as it was before the recipe audit (commit 821f042), as overrides of today's config.
_VIEWS_BEFORE = {"views_per_step": 4, "elevation_max": 60.0, "elevation_sphere_fraction": 0.0, "camera_perturb": 0.0,
                 "center_perturb": 0.0, "up_perturb": 0.0}
_LIGHT_BEFORE = {"sample": "fixed", "soft": False}
BEFORE = {
    "coarse": {"steps": 5000, "lr": {"mlp": 1e-3, "background": None},
               "volume": {"n_samples_per_ray": 512}},
    "coarse_sds": {"shading": {"warmup": 100, "lambertian_prob": 0.5, "textureless_prob": 0.2, "light": _LIGHT_BEFORE},
                   "sparsity_weight": 0.1,
                   "sparsity_form": "mean", "orientation": (0.0, 0.0, 1), "views": _VIEWS_BEFORE},
    "coarse_guidance": {"weighting": "sds", "max_step_percent_end": 0.5, "anneal": "linear",
                        "vae_grad_checkpointing": False},
    "mesh": {"steps": 3000, "box": "scene", "start": "occupancy", "normal_weight": 0.05, "laplacian_weight": 0.05,
             "sdf_weight": 0.01},
    "mesh_sds": {"shading": {"mode": "lambertian", "light": _LIGHT_BEFORE},
                 "views": {**_VIEWS_BEFORE, "fov_min": 40.0, "fov_max": 70.0}},
}
PARTS = ("render", "vae", "unet", "backward", "optimiser")


class PartTimer:
    """Seconds spent in each part of a step (:data:`PARTS`), by wrapping the functions that do them; CUDA is
    synchronised around each so that the figures are the GPU's."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self._undo = device, dict.fromkeys(PARTS, 0.0), []

    def _wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)
        timer = self

        def timed(*args, **kwargs):
            if timer.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if timer.device.type == "cuda":
                    torch.cuda.synchronize()
                timer.seconds[part] += time.perf_counter() - t0

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def __enter__(self) -> PartTimer:
        from dreamsmith.core.guidance.sds import SDSGuidance
        from dreamsmith.core.render.volume import VolumeRenderer
        from dreamsmith.core.stages import objectives

        self._wrap(VolumeRenderer, "render_image", "render")
        self._wrap(objectives, "render_mesh", "render")
        self._wrap(SDSGuidance, "encode", "vae")
        self._wrap(SDSGuidance, "predict_noise_pair", "unet")
        self._wrap(torch.Tensor, "backward", "backward")
        self._wrap(torch.optim.Adam, "step", "optimiser")
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}


# ---------------------------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory of a block: CUDA allocations, or the process's resident set sampled every 20 ms on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())


def available_bytes(device: torch.device) -> int:
    """Memory a new model may still take: free CUDA memory, or the kernel's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as fh:
        info = dict(line.split(":", 1) for line in fh)
    return int(info["MemAvailable"].split()[0]) * 1024


# ---------------------------------------------------------------------------------------------- priors


def _n_params(builder) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in builder().parameters())


class UNetCounter:
    """Counts the UNet's forward calls (each is one batch: both halves of classifier-free guidance)."""

    def __init__(self, unet) -> None:
        self.calls, self.batch = 0, 0
        self._forward = unet.forward

        def counted(x, *args, **kwargs):
            self.calls += 1
            self.batch = x.shape[0]
            return self._forward(x, *args, **kwargs)

        unet.forward = counted


SCALE = "full"  # --scale tiny: the suite's tiny priors, to check the script itself in seconds


def build_prior(kind: str, device: torch.device, dtype: torch.dtype, folder: Path):
    """A full-size random-weight :class:`~dreamsmith.core.priors.models.Prior` of ``kind``, or a reason it does not
    fit."""
    from dreamsmith.core.priors.models import Prior, _load_scheduler
    from dreamsmith.core.priors.prompts import _MEMORY_CACHE

    n = _n_params(lambda: build_unet(kind, SCALE)) + (_n_params(lambda: build_vae(SCALE)) if kind == "sd" else 0)
    need, free = n * BYTES[dtype], available_bytes(device)
    if need > 0.8 * free:
        return None, (f"skipped: the {kind.upper()}-like prior needs {need / 2**30:.1f} GiB of weights in {dtype} and "
                      f"only {free / 2**30:.1f} GiB is free on {device}")
    torch.manual_seed(0)
    unet = build_unet(kind, SCALE, dtype).to(device).requires_grad_(False).eval()
    vae = build_vae(SCALE, dtype).to(device).requires_grad_(False).eval() if kind == "sd" else None
    sched = folder / kind / "scheduler"
    sched.mkdir(parents=True, exist_ok=True)
    (sched / "scheduler_config.json").write_text(json.dumps(IF_SCHEDULER if kind == "if" else SD_SCHEDULER))
    width = text_encoder_config(kind, SCALE)["d_model" if kind == "if" else "hidden_size"]
    prior = Prior(kind="latent" if vae is not None else "pixel", model_id=f"random {kind}-like", path=folder / kind,
                  tokenizer=build_tokenizer(kind), text_encoder=None, unet=unet,
                  scheduler=_load_scheduler(folder / kind),
                  vae=vae, sample_size=64, image_size=512 if vae is not None else 64, device=device, dtype=dtype,
                  fingerprint=f"bench-{kind}", max_text_tokens=77)
    gen = torch.Generator().manual_seed(1)
    _MEMORY_CACHE.clear()  # the prompt processor finds these and never needs a text encoder
    for view in ("", ", front view", ", side view", ", back view", ", overhead view"):
        text = "a red cube" + view if view else ""
        _MEMORY_CACHE[(prior.fingerprint, text)] = torch.randn(77, width, generator=gen)
    return prior, f"{n / 1e9:.2f}B parameters in {dtype}"


# ---------------------------------------------------------------------------------------------- stages


@contextmanager
def timed_steps(times: list[float]):
    """A reporter callback that records the wall time of each step."""
    from dreamsmith.core.runtime.events import ProgressEvent

    last = [time.perf_counter()]

    def on_event(ev: ProgressEvent) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    yield on_event


def measure(name: str, steps_total: int, run, device: torch.device, counter: UNetCounter | None) -> dict:
    """Run a stage's ``run(callback)``; its seconds per step (the first step dropped when there are three or more),
    split into :data:`PARTS` (over all steps), UNet calls per step, projection and peak memory."""
    times: list[float] = []
    calls0 = counter.calls if counter else 0
    with timed_steps(times) as cb, PeakMemory(device) as mem, PartTimer(device) as parts:
        result = run(cb)
    measured = times[1:] if len(times) >= 3 else times
    per_step = sum(measured) / max(len(measured), 1)
    calls = (counter.calls - calls0) / max(len(times), 1) if counter else 0.0
    split = {k: v / max(len(times), 1) for k, v in parts.seconds.items()}
    row = {"stage": name, "s_per_step": per_step, "unet_calls_per_step": calls,
           "unet_batch": counter.batch if counter else 0, "projected_s": per_step * steps_total,
           "steps": steps_total, "peak_gib": mem.peak / 2**30, "parts": split}
    shown = " / ".join(f"{split[k]:.2f}" for k in PARTS)
    print(f"| {name} | {per_step:.2f} | {shown} | {calls:.0f} (batch {row['unet_batch']}) | {steps_total} | "
          f"{row['projected_s'] / 60:.1f} min | {row['peak_gib']:.2f} GiB |", flush=True)
    return {**row, "result": result}


def _stage_prior(stage: str, kind: str, device: torch.device, dtype: torch.dtype, folder: Path, cache: dict):
    """The prior of a stage and its UNet call counter (built once per kind: ``cache``), or ``(None, None)`` after a
    table row saying why not."""
    if kind not in cache:
        for other in [k for k in cache if k != kind]:  # one full-size prior in memory at a time
            del cache[other]
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        prior, note = build_prior(kind, device, dtype, folder)
        if prior is None:
            print(f"| {stage} | {note} | | | | | |")
            return None, None
        cache[kind] = (prior, UNetCounter(prior.unet))
    return cache[kind]


def run_pairing(pairing: str, preset: str, steps: int, device: torch.device, dtype: torch.dtype,
                folder: Path, cache: dict, overrides: dict | None = None, label: str = "") -> list[dict]:
    from dreamsmith.core.guidance.sds import SDSGuidance
    from dreamsmith.core.jobs.generate import generate_config
    from dreamsmith.core.jobs.io import finish_mesh
    from dreamsmith.core.priors.prompts import PromptProcessor
    from dreamsmith.core.runtime.events import StageReporter
    from dreamsmith.core.stages.coarse import train_coarse
    from dreamsmith.core.stages.mesh import train_mesh
    from dreamsmith.core.stages.objectives import MeshScoreDistillation, ScoreDistillation
    from dreamsmith.core.stages.surface import init_geometry

    cfg = generate_config(preset, overrides)
    full = generate_config(preset, overrides)
    coarse_kind, fine_kind = ("if", "sd") if pairing == "if+sd" else ("sd", "sd")
    print(f"\n### {preset}{label}, {pairing} ({coarse_kind.upper()}-like coarse prior, {fine_kind.upper()}-like fine "
          f"prior), {device}, {dtype}, {steps} steps a stage\n")
    print(f"| stage | s/step | {' / '.join(PARTS)} | UNet calls/step | preset steps | projected | peak memory |\n"
          "|---|---|---|---|---|---|---|")
    r = cfg.scene_radius
    bbox = torch.tensor([[-r] * 3, [r] * 3])
    gen = torch.Generator().manual_seed(0)
    rows = []

    prior, counter = _stage_prior("coarse", coarse_kind, device, dtype, folder, cache)
    if prior is None:
        return []
    guidance = SDSGuidance(prior, PromptProcessor(prior, "a red cube", "", cfg.prompt), cfg.coarse_guidance)
    cfg.coarse.steps = steps

    def coarse(cb):
        return train_coarse(cfg.coarse, ScoreDistillation(guidance, cfg.coarse_sds), bbox, device, gen,
                            StageReporter("coarse", steps, cb, None))

    row = measure("coarse", full.coarse.steps, coarse, device, counter)
    field = row.pop("result")[0]
    rows.append(row)

    if fine_kind != coarse_kind:
        del guidance, prior, counter
        prior, counter = _stage_prior("mesh", fine_kind, device, dtype, folder, cache)
        if prior is None:
            return rows
    fine_guidance = SDSGuidance(prior, PromptProcessor(prior, "a red cube", "", cfg.prompt), cfg.fine_guidance)
    geo = init_geometry(cfg.mesh, bbox, device, field.density, source="text")
    cfg.mesh.steps = steps

    def mesh(cb):
        objective = MeshScoreDistillation(fine_guidance, cfg.mesh.render_size, cfg=cfg.mesh_sds)
        return train_mesh(cfg.mesh, objective, field, geo, gen, StageReporter("mesh", steps, cb, None))

    row = measure("mesh", full.mesh.steps, mesh, device, counter)
    row.pop("result")
    rows.append(row)
    prior = counter = fine_guidance = None
    gc.collect()

    # The bake is the job's own (surface, its largest parts, the bake), timed on the surface these few steps made:
    # the written face count is printed, since the unwrap's time follows it (a trained surface at DMTet 128 has
    # about 121k faces; a random one here from 120k to 300k and more, decimated to the unwrap's 200k limit).
    def bake(cb):
        out = finish_mesh(geo, field.albedo, cfg.bake, cfg.mesh.min_component_fraction, "bench")
        cb(None)
        return out

    row = measure("bake", 1, bake, device, None)
    print(f"\nbake: {len(row.pop('result').faces)} faces (a surface a few random steps old) at texture "
          f"{cfg.bake.texture_size}")
    rows.append(row)
    total = sum(x["projected_s"] for x in rows)
    unet = sum(x["unet_calls_per_step"] * x["steps"] for x in rows)
    print(f"projected total ({preset}{label}, {pairing}): {total / 60:.1f} min; {unet:.0f} UNet evaluations a job; "
          f"peak memory {max(x['peak_gib'] for x in rows):.2f} GiB (loading the priors not included)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("fast", "standard", "high"), nargs="+", default=["standard"],
                        help="one or more presets, run in this order in one process on the same priors; with more "
                        "than one, the ratios of each to the first are printed")
    parser.add_argument("--compare", choices=("before",), help="also run the preset as it was before the recipe "
                        "audit (the standard preset's old settings), side by side, and print the ratios")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="steps of each stage to time (default 5)")
    parser.add_argument("--pairing", choices=("if+sd", "sd", "both"), default="both")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                        help="weights: auto is fp16 on CUDA (as the engine), bf16 on the CPU (to fit in memory)")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full",
                        help="full: the real architectures' sizes; tiny: the suite's priors (checks the script only)")
    args = parser.parse_args(argv)
    global SCALE
    SCALE = args.scale
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu")
    dtype = DTYPES[args.dtype] if args.dtype != "auto" else (torch.float16 if device.type == "cuda"
                                                               else torch.bfloat16)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# bench_presets: {name}, torch {torch.__version__}")
    from dreamsmith.kernels import hashgrid, raster

    print(f"fast paths: tiny-cuda-nn {'yes' if hashgrid.available(device) else 'no'}, "
          f"nvdiffrast {'yes' if raster.available() else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        cache: dict = {}
        for pairing in (("if+sd", "sd") if args.pairing == "both" else (args.pairing,)):
            first = run_pairing(pairing, args.preset[0], args.steps, device, dtype, Path(tmp), cache)
            if args.compare == "before":
                then = run_pairing(pairing, args.preset[0], args.steps, device, dtype, Path(tmp), cache, BEFORE,
                                   " as before the recipe audit")
                print_ratios(f"{pairing}: before / now", then, first,
                             " (bake settings unchanged: the two surfaces differ)")
            for preset in args.preset[1:]:
                other = run_pairing(pairing, preset, args.steps, device, dtype, Path(tmp), cache)
                print_ratios(f"{pairing}: {preset} / {args.preset[0]}", other, first)
    return 0


def print_ratios(title: str, rows: list[dict], base: list[dict], bake_note: str = "") -> None:
    """A table of ``rows``' time and memory over ``base``'s, stage by stage, then the job's."""
    print(f"\n| {title} | s per step | projected stage time | peak memory |\n|---|---|---|---|")
    for a, b in zip(rows, base, strict=False):
        note = bake_note if a["stage"] == "bake" else ""
        print(f"| {a['stage']}{note} | {a['s_per_step'] / b['s_per_step']:.2f}x | "
              f"{a['projected_s'] / b['projected_s']:.2f}x | {a['peak_gib'] / b['peak_gib']:.2f}x |")
    for name, keep in (("total", lambda x: True), ("training (coarse + mesh)", lambda x: x["stage"] != "bake")):
        ratio = (sum(x["projected_s"] for x in rows if keep(x))
                 / max(sum(x["projected_s"] for x in base if keep(x)), 1e-9))
        print(f"| {name} | | {ratio:.2f}x | |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
