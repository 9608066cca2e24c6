"""The jobs the engine runs, one module each, and the one table that the CLI and the worker loop over.

A job takes its inputs (declared once, as the fields of ``protocol.Job`` made with a ``JobInput``: the command
line's options, the worker's checks and these calls come from there), an output path, its config and the common
keywords (device, callback, cancel, preset, preview), and returns a summary. Modules are imported on first use, so
that listing the jobs stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...protocol import input_values, job_inputs


@dataclass(frozen=True)
class JobKind:
    """One row of :data:`JOBS`.

    Attributes:
        name: The command (``python -m dreamsmith NAME``; the worker's ``command``).
        help: One line for ``--help``.
        module: The module under ``core/jobs`` with ``<name>_config(preset, overrides)``, ``run_<name>`` (its
            inputs, ``out`` and ``cfg`` by name) and ``<Name>Config``.
        priors: The config fields that name the job's diffusion priors, in stage order (``coarse_model`` and/or
            ``fine_model``; none for a job without priors).
    """

    name: str
    help: str
    module: str
    priors: tuple[str, ...] = ("coarse_model", "fine_model")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of the job's inputs (:func:`~dreamsmith.protocol.job_inputs`)."""
        return tuple(job_inputs(self.name))

    def _mod(self):
        return importlib.import_module(f"{__name__}.{self.module}")

    @property
    def config_class(self) -> type:
        """The job's config dataclass."""
        return getattr(self._mod(), f"{self.name.capitalize()}Config")

    def config(self, preset: str, overrides: dict[str, Any] | None = None,
               inputs: dict[str, Any] | None = None) -> Any:
        """The config of ``preset`` with ``overrides`` merged on top (unknown keys are errors); a job given a
        picture among its ``inputs`` gets the picture's settings between the two (``picture=True``)."""
        make: Callable[..., Any] = getattr(self._mod(), f"{self.name}_config")
        if "image" in self.inputs and (inputs or {}).get("image"):
            return make(preset, overrides, picture=True)
        return make(preset, overrides)

    def run(self, inputs: dict[str, Any], out: Any, cfg: Any, force: bool = False, **common: Any) -> dict[str, Any]:
        """Run the job; ``common``: device, callback, cancel, preset, preview. Returns its summary, with the cost
        estimated before any work (``estimate``).

        First the estimate (:mod:`..estimate`), reported as an ``estimate`` event: a job that cannot fit is refused
        unless ``force``; then the C++ kernels are loaded (a ``kernels`` stage when they must be built or waited
        for); then the job.
        """
        from ..runtime.device import prepare_kernels, resolve_device
        from ..runtime.estimate import check_fits, estimate_job, free_gib
        from ..runtime.events import ProgressEvent

        run: Callable[..., dict[str, Any]] = getattr(self._mod(), f"run_{self.name}")
        callback = common.get("callback")
        dev = resolve_device(common.get("device", "auto"))
        cost = estimate_job(self.name, cfg, dev.type)
        if callback is not None:
            callback(ProgressEvent("estimate", 0, 0, message=cost.text()))
        check_fits(cost, free_gib(dev), common.get("preset", "custom"), force)
        prepare_kernels(callback, common.get("cancel"))
        return run(out=out, cfg=cfg, **input_values(self.name, inputs), **common) | {"estimate": cost.as_dict()}


JOBS: dict[str, JobKind] = {kind.name: kind for kind in (
    JobKind("reconstruct", "fit a textured mesh to posed RGBA images (transforms.json)", "reconstruct", priors=()),
    JobKind("generate", "make a textured mesh from a text prompt, or from a picture (score distillation)",
            "generate"),
    JobKind("retexture", "paint a new texture on a mesh from a prompt (its geometry is kept)", "retexture",
            priors=("fine_model",)),
    JobKind("edit", "change a mesh's shape and texture towards a prompt", "edit"),
    JobKind("transfer", "bake a textured mesh's colour and surface detail onto another mesh (kept or new UVs)",
            "transfer", priors=()),
)}
