"""What a job will cost, said before any work: time and peak memory on the chosen device, from the preset's steps
and views and the priors' sizes; and the refusal of a job that cannot fit.

The figures are a cost model, not a promise: seconds per rendered view and step of each stage, and memory per view,
measured for two kinds of prior (the toy prior of the draft preset and Stable-Diffusion-sized ones) on this
project's CPU and one GPU (``docs/benchmarks.md`` gives each figure's command and date). A step of another preset
costs its views times that; a GPU other than the one measured, or the recipe's changes since a measurement, make
it a projection, and the text says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...protocol import DEMO_MODEL, model_info
from .errors import ResourceError

#: Priors with fewer parameters (billions) than this cost what the toy prior does; larger ones what SD 2.1 does.
REAL_SIZE_B = 0.1
#: Seconds per view and step, by device kind and prior size, for the coarse stage, the mesh stage (re-texturing
#: too) and a reconstruction step (no prior). CPU: this project's 2-core machine (toy: the draft preset end to end;
#: real: ``scripts/bench_presets.py --device cpu``, 4 views a step). CUDA: one H200, PyTorch paths, 4 views a step
#: (``scripts/bench_presets.py --device cuda``); MPS: not measured, taken as 4x the CUDA figures.
UNIT_SECONDS: dict[tuple[str, str], dict[str, float]] = {
    ("cpu", "toy"): {"coarse": 0.065, "mesh": 0.065, "reconstruct": 0.25},
    ("cpu", "real"): {"coarse": 21.5, "mesh": 20.4, "reconstruct": 0.25},
    ("cuda", "toy"): {"coarse": 0.011, "mesh": 0.019, "reconstruct": 0.02},
    ("cuda", "real"): {"coarse": 0.10, "mesh": 0.06, "reconstruct": 0.02},
}
#: Seconds to load a prior, and to unwrap and bake 100k faces (xatlas, on the CPU whatever the device; measured
#: before the unwrap went in pieces, 3.7x faster on this CPU: an upper bound until it is measured again).
LOAD_SECONDS = {"toy": 3.0, "real": 30.0}
BAKE_SECONDS_PER_100K = 33.0
#: GiB of activations per rendered view (a real prior's VAE at 512 px dominates), on top of the weights (fp16 on a
#: GPU, as loaded) and the text encoders, which are released before the stages.
VIEW_GIB = {"toy": 0.05, "real": 2.5}
#: A job estimated longer than this is refused unless forced (standard on a CPU is about 200 hours).
MAX_HOURS = 6.0


@dataclass
class Estimate:
    """What a job will cost.

    Attributes:
        seconds: Wall time, end to end (load, stages, bake).
        peak_gib: Peak memory on the device: GPU memory on CUDA/MPS, resident memory on the CPU.
        device: The device kind it was estimated for (``cpu``, ``cuda`` or ``mps``).
        stages: Seconds per stage.
        basis: How the figures were had (measured device, or a projection).
        sizes_known: Every prior's size was known (a prior that is not on this computer yet is a guess: a job is
            never refused on a guess; its loading says what is wrong, or downloads it).
    """

    seconds: float
    peak_gib: float
    device: str
    stages: dict[str, float]
    basis: str
    sizes_known: bool = True

    def text(self) -> str:
        """One line for people: "about 4 min and 6.1 GB on CUDA"."""
        return f"about {duration_text(self.seconds)} and {self.peak_gib:.1f} GB on {self.device.upper()}"

    def as_dict(self) -> dict[str, Any]:
        """For summaries and JSON output."""
        return {"seconds": round(self.seconds, 1), "peak_gib": round(self.peak_gib, 2), "device": self.device,
                "stages": {k: round(v, 1) for k, v in self.stages.items()}, "basis": self.basis}


def duration_text(seconds: float) -> str:
    """``seconds`` as people say it: "40 s", "12 min", "3.5 h", "8 days"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def prior_billions(model: str) -> float | None:
    """Parameters (billions) of a prior: the model list's figure, else its UNet weights' size on disk (a local
    folder, or the Hub cache's copy of a Hub id); None when it is nowhere on this computer."""
    info = model_info(model or DEMO_MODEL)
    if info is not None:
        return info.parameters_b
    folder = Path(model).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model, local_files_only=True))
        except Exception:  # not cached, not a valid id: its size is not known here
            return None
    files = list((folder / "unet").glob("*.safetensors"))
    if not files:
        return None
    return sum(f.stat().st_size / (2 if ".fp16." in f.name else 4) for f in files) / 1e9


def _scale(models: list[str]) -> tuple[str, float, bool]:
    """("toy" | "real", GiB of the largest prior's weights as loaded (fp16), whether every size was known); an
    unknown prior counts as real-size."""
    sizes = [prior_billions(m) for m in models]
    billions = max((1.0 if b is None else b for b in sizes), default=0.0)
    return ("real" if billions >= REAL_SIZE_B else "toy"), billions * 2.0, None not in sizes


def _stage_steps(command: str, cfg: Any) -> dict[str, tuple[int, int]]:
    """``stage -> (steps, views per step)`` of a job's config."""
    if command == "retexture":
        return {"texture": (cfg.mesh.steps, cfg.mesh_sds.views.views_per_step)}
    if command == "reconstruct":
        return {"reconstruct": (cfg.coarse.steps + cfg.mesh.steps, 1)}
    if command == "transfer":
        return {}
    return {"coarse": (cfg.coarse.steps, cfg.coarse_sds.views.views_per_step),
            "mesh": (cfg.mesh.steps, cfg.mesh_sds.views.views_per_step)}


def _faces(command: str, cfg: Any) -> float:
    """Faces the bake unwraps: a DMTet surface has about 7 r^2 faces at resolution r (121k measured at 128)."""
    if command in ("retexture", "transfer"):
        return 50_000.0
    return 7.4 * cfg.mesh.dmtet.resolution ** 2


def job_models(command: str, cfg: Any) -> list[str]:
    """The priors a job's config loads."""
    if command in ("reconstruct", "transfer"):
        return []
    if command == "retexture":
        return [cfg.fine_model.model]
    return [m for m in (cfg.coarse_model.model, cfg.fine_model.model) if m]


def estimate_job(command: str, cfg: Any, device_kind: str) -> Estimate:
    """The cost of a job of ``command`` with config ``cfg`` on a device of kind ``device_kind``."""
    kind = device_kind if device_kind in ("cpu", "cuda") else "cuda"
    scale, weights_gib, known = _scale(job_models(command, cfg))
    unit = UNIT_SECONDS[(kind, scale)]
    slow = 4.0 if device_kind == "mps" else 1.0
    stages: dict[str, float] = {"load": LOAD_SECONDS[scale] if job_models(command, cfg) else 1.0}
    views = 1
    for stage, (steps, per_step) in _stage_steps(command, cfg).items():
        stages[stage] = steps * per_step * unit.get(stage, unit["mesh"]) * slow  # re-texturing costs as the mesh
        views = max(views, per_step)
    stages["bake"] = BAKE_SECONDS_PER_100K * _faces(command, cfg) / 100_000
    peak = weights_gib + views * VIEW_GIB[scale] + 0.5
    measured = {"cpu": "measured on this project's 2-core CPU", "cuda": "measured on one H200 (PyTorch paths)"}
    basis = measured.get(device_kind, "projected from an H200 (MPS not measured)")
    if scale == "real":
        basis += "; the per-view cost of 4-view steps, so a projection for other view counts"
    if not known:
        basis += "; a prior not on this computer, taken as Stable-Diffusion-sized"
    return Estimate(sum(stages.values()), peak, device_kind, stages, basis, known)


def free_gib(device) -> float | None:
    """Free memory on ``device`` (a torch device) in GiB; None where it is not known (the CPU, MPS)."""
    if device.type != "cuda":
        return None
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return free / 2**30


def check_fits(estimate: Estimate, free: float | None, preset: str, force: bool = False) -> None:
    """Refuse (:class:`ResourceError`) a job that cannot fit: more memory than the device has free, or longer than
    :data:`MAX_HOURS`; with ``force`` it runs anyway. The message gives the estimate and what to choose instead."""
    if force or not estimate.sizes_known:
        return
    if free is not None and estimate.peak_gib > free:
        raise ResourceError(f"This job needs {estimate.text()} but the GPU has {free:.1f} GB free. Close other "
                            f"programs that use the GPU, choose a smaller preset (fast, or draft with the demo "
                            f"model), or run it anyway with --force.")
    if estimate.seconds > MAX_HOURS * 3600:
        hint = ("use a GPU (--device cuda), or the draft preset with the demo model"
                if estimate.device == "cpu" else "choose a smaller preset (fast or draft)")
        raise ResourceError(f"The {preset} preset would take {estimate.text()} ({estimate.basis}); {hint}, or run "
                            f"it anyway with --force.")



def device_name(device) -> str:
    """The device as people know it: "NVIDIA GeForce RTX 4070 (12 GB)", "Apple MPS", "CPU"."""
    if device.type == "cuda":
        import torch

        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GB)"
    return "Apple MPS" if device.type == "mps" else "CPU"
