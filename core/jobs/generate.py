"""Text to 3D, the Magic3D way: coarse NeRF by SDS against a pixel prior, then the DMTet mesh stage by SDS
(against a latent prior, or the same pixel prior), then bake and export."""

from __future__ import annotations

import dataclasses
import gc
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from ...protocol import SD21_BASE
from ..finish.bake import BakeConfig
from ..guidance.sds import SDSConfig, SDSGuidance
from ..meshio import FileWrite, TexturedMesh
from ..picture.condition import picture_camera, picture_condition, read_picture
from ..picture.load import ReferenceImage, load_reference
from ..picture.reference_view import (
    CoarseReference,
    ImageConfig,
    MeshReference,
    ReferenceTarget,
    check_image_config,
    reference_scores,
    turned_to_front,
)
from ..priors.models import PriorConfig, load_prior
from ..priors.prompts import PromptConfig, PromptProcessor
from ..render.preview import field_preview
from ..runtime.device import resolve_device, seeded_job
from ..runtime.events import CancelToken, ProgressCallback, StageTimes
from ..settings.config import merge, to_dict
from ..settings.presets import GENERATE_PRESETS, PICTURE_OVERRIDES, preset_config
from ..stages.coarse import CoarseConfig, CoarseSDSConfig
from ..stages.interfaces import CoarseObjective, MeshObjectiveFn
from ..stages.mesh import MeshSDSConfig, MeshStageConfig, mesh_stage_preview
from ..stages.objectives import MeshScoreDistillation, ScoreDistillation
from .io import check_inputs, check_output_path, check_prompt, result_extras, result_summary, write_outputs
from .pipeline import Carving, Pipeline, run_pipeline


@dataclass
class GenerateConfig:
    """A text-to-3D job.

    Attributes:
        seed: Seed of every random choice (same seed, same device: same result).
        scene_radius: Half-size of the cubic scene box around the origin (world units).
        coarse_model: The prior of the coarse stage (pixel space, e.g. DeepFloyd IF stage I).
        fine_model: The prior of the mesh stage (e.g. Stable Diffusion); an empty ``model`` reuses the coarse one.
        prompt: View-dependent prompting and embedding caches.
        coarse: The coarse NeRF (field, occupancy, renderer, steps, learning rates).
        coarse_sds: Views, shading and regularisers of the coarse stage.
        coarse_guidance: SDS settings of the coarse stage.
        mesh: The mesh stage (DMTet grid, steps, learning rates, regularisers).
        mesh_sds: Views and shading of the mesh stage.
        fine_guidance: SDS settings of the mesh stage.
        bake: UV unwrapping and texture baking.
        image: Image to 3D: the reference view, its losses and their schedule (unused for text).
    """

    seed: int = 0
    scene_radius: float = 1.0
    coarse_model: PriorConfig = field(default_factory=lambda: PriorConfig(model=SD21_BASE))
    fine_model: PriorConfig = field(default_factory=lambda: PriorConfig(model=SD21_BASE))
    prompt: PromptConfig = field(default_factory=PromptConfig)
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    coarse_sds: CoarseSDSConfig = field(default_factory=CoarseSDSConfig)
    coarse_guidance: SDSConfig = field(default_factory=SDSConfig)
    mesh: MeshStageConfig = field(default_factory=MeshStageConfig)
    mesh_sds: MeshSDSConfig = field(default_factory=MeshSDSConfig)
    fine_guidance: SDSConfig = field(default_factory=SDSConfig)
    bake: BakeConfig = field(default_factory=BakeConfig)
    image: ImageConfig = field(default_factory=ImageConfig)


def generate_config(preset: str, overrides: dict[str, Any] | None = None, picture: bool = False) -> GenerateConfig:
    """The GenerateConfig of ``preset`` with ``overrides`` on top (unknown keys are errors); ``picture``: for image
    to 3D, with the preset's picture settings of the stages (:data:`~..settings.presets.PICTURE_OVERRIDES`) between
    the preset and ``overrides``."""
    return preset_config(GenerateConfig, GENERATE_PRESETS, preset,
                         merge(PICTURE_OVERRIDES.get(preset, {}), overrides or {}) if picture else overrides)


def used_models(cfg: GenerateConfig) -> dict[str, str]:
    """The priors of a generate or edit config, as a summary reports them (``protocol.result_models``)."""
    return {"coarse": cfg.coarse_model.model, "fine": cfg.fine_model.model or cfg.coarse_model.model}


def make_guidance(prior, prompt: str, negative: str, prompt_cfg: PromptConfig, sds_cfg: SDSConfig,
                  allow_empty: bool = False) -> SDSGuidance:
    """Embed the prompt (view-dependent; empty only with ``allow_empty``: unconditioned), release the text encoder,
    and wrap the prior for SDS."""
    prompts = PromptProcessor(prior, prompt, negative, prompt_cfg, allow_empty=allow_empty)
    prior.release_text_encoder()
    return SDSGuidance(prior, prompts, sds_cfg)


def generate_mesh(prompt: str, negative_prompt: str, cfg: GenerateConfig, dev: torch.device,
                  callback: ProgressCallback | None = None, cancel: CancelToken | None = None,
                  density_prior: torch.Tensor | None = None,
                  state_out: str | os.PathLike | None = None, reference: ReferenceImage | None = None
                  ) -> tuple[TexturedMesh, dict[str, float], list[FileWrite]]:
    """The two stages and the bake, for checked inputs: the textured mesh (scene frame) and seconds per stage.

    ``density_prior`` (a ``[R, R, R]`` raw-density grid over the scene box) starts the coarse field from an
    existing shape instead of the blob: that is how an edit begins. ``state_out``: the third value is then the
    state file (the field and the geometry, :mod:`.state`) for later edits, to write with the result.
    ``reference``: image to 3D: the picture is an objective at its camera in both stages (:mod:`.reference_view`)
    and the prompt may be empty.
    """
    with seeded_job(cfg.seed, dev) as gen:
        timings = StageTimes()
        r = cfg.scene_radius
        bbox = torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32)

        with timings.stage("load"):
            coarse_prior = load_prior(cfg.coarse_model, dev)
        start = None  # image to 3D: where learning the picture's condition starts (None: the empty text)
        if reference is not None:
            with timings.stage("picture"):
                start = read_picture(coarse_prior, prompt, negative_prompt, cfg.image, cfg.prompt, cfg.coarse_guidance,
                                     reference, gen, callback, cancel)
        text = reference.caption if reference is not None and not prompt else prompt
        with timings.stage("load"):  # the model and its prompt's embeddings, as for every job
            guidance = make_guidance(coarse_prior, text, negative_prompt, cfg.prompt, cfg.coarse_guidance,
                                     reference is not None)
        if reference is not None and not text and cfg.image.condition != "none":
            with timings.stage("picture"):
                picture_condition(cfg.image, guidance, reference, gen, callback, cancel, start)
        name = prompt[:60] or (reference.name if reference is not None else "")
        spec = generate_pipeline(cfg, guidance, text, negative_prompt, reference, gen, dev, callback, cancel, name,
                                 density_prior)
        del guidance, coarse_prior  # held by the spec's objectives alone: freed as the pipeline drops them
        made = run_pipeline(spec, bbox, dev, gen, timings, callback, cancel)
        mesh = made.mesh
        if reference is not None:
            mesh = turned_to_front(mesh, reference.azimuth)
        files = []
        # A result turned to the picture's front no longer matches its field: edits then start from the mesh.
        if state_out is not None and not (reference is not None and reference.azimuth):
            from ..scene.state import state_files

            background = made.renderer.background if made.renderer is not None else None
            files = state_files(state_out, made.field, made.geometry, to_dict(cfg), background=background)
        return mesh, timings, files


def generate_pipeline(cfg: GenerateConfig, guidance: SDSGuidance, text: str, negative_prompt: str,
                      reference: ReferenceImage | None, gen: torch.Generator, dev: torch.device,
                      callback: ProgressCallback | None, cancel: CancelToken | None, name: str,
                      density_prior: torch.Tensor | None = None) -> Pipeline:
    """Magic3D as a :class:`~.pipeline.Pipeline`: the coarse stage by score distillation against ``guidance`` (the
    coarse prior with the prompt's embeddings), the mesh stage against the fine prior (the same one when the config
    names no other; else it is loaded when the mesh stage begins, after the coarse prior is let go) and, for image
    to 3D, the picture at its camera in both stages (:mod:`..stages.reference_view`), carving the surface.
    ``name`` names the result; ``density_prior`` is where the coarse field starts (an edit's mesh)."""
    live = callback is not None  # live previews only for someone who listens
    coarse: CoarseObjective = ScoreDistillation(guidance, cfg.coarse_sds)
    carve = None
    if reference is not None:
        size = cfg.image.coarse_size or cfg.coarse_sds.render_size
        target = ReferenceTarget.make(reference, cfg.image, cfg.coarse_sds.views, size, dev, cfg.image.coarse_edge_band)
        coarse = CoarseReference(target, cfg.image, coarse)
        carve = partial(target.carve, margin=cfg.image.carve_margin) if cfg.image.carve else None
    same_model = not cfg.fine_model.model or cfg.fine_model.model == cfg.coarse_model.model
    kept = [guidance] if same_model else []  # the mesh stage's guidance is made from it, then it is let go

    def mesh_objective() -> MeshObjectiveFn:
        if same_model:
            base = kept.pop()
            fine = SDSGuidance(base.prior, base.prompts, cfg.fine_guidance)
        else:
            gc.collect()  # the coarse prior, once the pipeline has let the coarse objective go
            fine = make_guidance(load_prior(cfg.fine_model, dev), text, negative_prompt, cfg.prompt,
                                 cfg.fine_guidance, reference is not None)
            # another encoder: its condition learned again, from the empty text
            if reference is not None and not text and cfg.image.condition != "none":
                picture_condition(cfg.image, fine, reference, gen, callback, cancel)
        objective: MeshObjectiveFn = MeshScoreDistillation(fine, cfg.mesh.render_size, cfg=cfg.mesh_sds)
        if reference is not None:
            size = cfg.image.mesh_size or cfg.mesh.render_size
            target = ReferenceTarget.make(reference, cfg.image, cfg.mesh_sds.views, size, dev)
            objective = MeshReference(target, cfg.image, objective)
        return objective

    return Pipeline(
        name=name, mesh=cfg.mesh, mesh_objective=mesh_objective, bake=cfg.bake,
        keep_fraction=cfg.mesh.min_component_fraction, coarse=cfg.coarse, coarse_objective=coarse,
        carving=Carving(carve, source="text", hull_fallback=False, carve_after_cleaning=True),
        density_prior=density_prior, coarse_preview=field_preview(cfg.scene_radius) if live else None,
        mesh_preview=mesh_stage_preview(cfg.scene_radius, cfg.mesh_sds) if live else None)


def run_generate(prompt: str | None, out: str | os.PathLike, cfg: GenerateConfig, negative_prompt: str = "",
                 device: str = "auto", callback: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 preset: str = "custom", preview: str | os.PathLike | None = None,
                 state_out: str | os.PathLike | None = None, image: str | os.PathLike | None = None,
                 elevation: float | None = None, fov: float | None = None) -> dict[str, Any]:
    """Generate a textured mesh from ``prompt``, or from the picture ``image`` (and optionally a prompt), and write
    it to ``out`` (GLB or OBJ), atomically; with ``state_out``, also the engine's state for later edits.

    ``elevation`` and ``fov``: the camera the picture was taken from (degrees; see :class:`ImageConfig`).

    Returns:
        A summary: output path, face and vertex counts, seconds per stage; for a picture, its name and how the
        result looks from the picture's camera (``reference``: silhouette IoU and colour error).
    """
    reference = None
    if image:
        cfg = dataclasses.replace(cfg, image=picture_camera(cfg.image, elevation, fov))
        check_image_config(cfg.image)
        text = (prompt or "").strip()
        prompt = check_prompt(text) if text else ""
        negative_prompt = check_prompt(negative_prompt, "negative prompt") if negative_prompt.strip() else ""
        out_path, dev = check_output_path(out, preview, state_out), resolve_device(device)
        reference = load_reference(image, cfg.image.input)
    else:
        prompt, negative_prompt, out_path, dev = check_inputs(prompt or "", negative_prompt, out, preview, device,
                                                              state_out)
    mesh, timings, state = generate_mesh(prompt, negative_prompt, cfg, dev, callback, cancel, state_out=state_out,
                                         reference=reference)
    extras = result_extras("generate", prompt=prompt, negative_prompt=negative_prompt, seed=cfg.seed, preset=preset,
                           **{f"{k}_model": v for k, v in used_models(cfg).items()})
    summary: dict[str, Any] = {}
    if reference is not None:
        extras |= {"image": reference.name, "elevation": cfg.image.elevation, "fov": cfg.image.fov,
                   "picture_azimuth": reference.azimuth}
        if reference.caption:
            extras["caption"] = summary["caption"] = reference.caption
        elif reference.caption_read:  # read but not clear enough: the condition was learned instead
            summary["caption_set_aside"] = {"caption": reference.caption_read,
                                            "margin": round(reference.caption_margin, 3)}
        summary |= {"image": reference.name, "picture_azimuth": reference.azimuth,
                   "reference": reference_scores(mesh, reference, cfg.image, cfg.mesh_sds.views)}
    write_outputs(mesh, out_path, preview, extras, state)
    return result_summary(out_path, len(mesh.faces), len(mesh.verts), cfg, timings,
                          state=str(state_out) if state else None, models=used_models(cfg), **summary)
