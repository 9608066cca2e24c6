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
#: too) and a reconstruction step (no prior), each as ``(fixed, scaled)``: ``fixed`` does not follow the renderer's
#: size (the prior, the optimiser), ``scaled`` is the renderer's part at :data:`BASIS` and grows with it, linearly in
#: the coarse stage's samples per ray and with the cube of the mesh stage's tet resolution. CPU toy: the draft preset
#: end to end (its 64 samples and 32 tets; not split). CPU real: ``scripts/bench_presets.py --device cpu --preset
#: standard high``, 1 view a step, two runs (standard and high differ in the renderer alone: 18.8 and 21.6 s a coarse
#: step, 18.3 and 20.4 s a mesh step). CUDA real: one H200, PyTorch paths, 4 views a step, 0.40 s a coarse step at
#: 512 samples a ray and 0.65 s at 1024, 0.24 s a mesh step at 128 tets (its tet share not measured on a GPU: the
#: CPU's 4.8 % taken); MPS: not measured, taken as 4x the CUDA figures.
UNIT_SECONDS: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("cpu", "toy"): {"coarse": (0.065, 0.0), "mesh": (0.065, 0.0), "reconstruct": (0.25, 0.0)},
    ("cpu", "real"): {"coarse": (16.0, 2.76), "mesh": (17.5, 0.88), "reconstruct": (0.25, 0.0)},
    ("cuda", "toy"): {"coarse": (0.011, 0.0), "mesh": (0.019, 0.0), "reconstruct": (0.02, 0.0)},
    ("cuda", "real"): {"coarse": (0.0375, 0.0625), "mesh": (0.057, 0.003), "reconstruct": (0.02, 0.0)},
}
#: What the ``scaled`` part of :data:`UNIT_SECONDS` was measured at, by device kind: samples per ray (coarse) and
#: tet-grid resolution (mesh).
BASIS = {"cpu": {"samples": 256, "tets": 128}, "cuda": {"samples": 512, "tets": 128}}
#: Seconds to load a prior; the bake's seconds (on the CPU whatever the job's device; the surface extraction aside):
#: fixed, per 100k faces written, per million texels of each level's texture, and per million texels of a normal map
#: (baked when the written mesh is coarser than the surface: decimated to the unwrap's limit or a face budget, or
#: levels of detail). Fitted to ``scripts/bench_bake.py`` on this CPU (box-and-ball; 2026-12-07): 102k faces at 1024
#: 2.1 s; 293k faces decimated to 200k, with the normal map, 7.5 s at 1024 and 19.4 s at 2048; the draft's 7.6k
#: faces at 256 0.7-0.8 s.
LOAD_SECONDS = {"toy": 3.0, "real": 30.0}
BAKE_SECONDS = {"fixed": 0.5, "per_100k_faces": 1.5, "per_mpix": 0.5, "normal_map_per_mpix": 3.5}
#: GiB of activations per rendered view (a real prior's VAE at 512 px dominates) at :data:`BASIS`, on top of the
#: weights (fp16 on a GPU, as loaded) and the text encoders, which are released before the stages.
VIEW_GIB = {"toy": 0.05, "real": 2.5}
#: GiB more per view for every 512 samples a ray over the standard preset's 256 (one H200: 16.1 -> 20.0 GiB for 4
#: views at 512 -> 1024 samples; this CPU, resident: 0.5-0.7 GiB more for 1 view at 256 -> 512), and for a tet grid
#: finer than 128, per unit of ``(r / 128)^3 - 1`` (this CPU: 1.1-1.3 GiB more at 128 -> 192;
#: ``scripts/bench_presets.py``, two runs).
RAY_GIB_PER_512 = 0.98
TET_GIB = 0.50
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


def _samples(cfg: Any) -> float:
    return float(cfg.coarse.volume.n_samples_per_ray)


def _renderer_growth(command: str, cfg: Any, kind: str) -> dict[str, float]:
    """How many times the renderer's work at :data:`BASIS` each stage's is: samples per ray (coarse), the tet
    grid's cells (mesh; re-texturing renders a fixed mesh and keeps the basis)."""
    if command not in ("generate", "edit"):
        return {}
    basis = BASIS[kind]
    return {"coarse": _samples(cfg) / basis["samples"], "mesh": (cfg.mesh.dmtet.resolution / basis["tets"]) ** 3}


def bake_seconds(faces: float, bake: Any) -> float:
    """The bake's seconds for a surface of ``faces`` with the bake config ``bake`` (:data:`BAKE_SECONDS`)."""
    written = min(faces, bake.max_faces_for_unwrap, bake.faces or faces)
    mpix = bake.texture_size ** 2 / 2**20 * max(1, bake.lods)
    normal_map = bake.normal_map and (written < faces or bake.lods > 1)
    return (BAKE_SECONDS["fixed"] + BAKE_SECONDS["per_100k_faces"] * written / 100_000
            + mpix * (BAKE_SECONDS["per_mpix"] + (BAKE_SECONDS["normal_map_per_mpix"] if normal_map else 0.0)))


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
    growth = _renderer_growth(command, cfg, kind)
    views, extra_gib = 1, 0.0
    for stage, (steps, per_step) in _stage_steps(command, cfg).items():
        fixed, scaled = unit.get(stage, unit["mesh"])  # re-texturing costs as the mesh stage
        stages[stage] = steps * per_step * (fixed + scaled * growth.get(stage, 1.0)) * slow
        views = max(views, per_step)
        if scale == "real" and stage == "coarse":
            extra_gib = max(extra_gib, per_step * RAY_GIB_PER_512 * max(0.0, _samples(cfg) - 256) / 512)
        if scale == "real" and stage == "mesh":
            extra_gib = max(extra_gib, TET_GIB * max(0.0, (cfg.mesh.dmtet.resolution / 128) ** 3 - 1))
    stages["bake"] = bake_seconds(_faces(command, cfg), cfg.bake)
    peak = weights_gib + views * VIEW_GIB[scale] + extra_gib + 0.5
    measured = {"cpu": "measured on this project's 2-core CPU", "cuda": "measured on one H200 (PyTorch paths)"}
    basis = measured.get(device_kind, "projected from an H200 (MPS not measured)")
    if scale == "real" and kind == "cuda":
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
