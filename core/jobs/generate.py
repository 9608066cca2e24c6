"""Text to 3D, the Magic3D way: coarse NeRF by SDS against a pixel prior, then the DMTet mesh stage by SDS
(against a latent prior, or the same pixel prior), then bake and export."""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from ... import __version__
from ...protocol import SD21_BASE
from ..bake import BakeConfig
from ..config import to_dict
from ..device import resolve_device, seeded_job
from ..events import CancelToken, ProgressCallback, StageReporter
from ..guidance.sds import SDSConfig, SDSGuidance
from ..image_input import ReferenceImage, load_reference
from ..meshio import FileWrite, TexturedMesh
from ..models import PriorConfig, load_prior
from ..presets import GENERATE_PRESETS, config_maker
from ..prompts import PromptConfig, PromptProcessor
from ..render.preview import field_preview, mesh_preview
from ..stages.coarse import CoarseConfig, CoarseSDSConfig, train_coarse
from ..stages.interfaces import CoarseObjective, MeshObjectiveFn
from ..stages.mesh import MeshSDSConfig, MeshStageConfig, train_mesh
from ..stages.objectives import MeshScoreDistillation, ScoreDistillation
from ..stages.reference_view import (
    CoarseReference,
    ImageConfig,
    MeshReference,
    ReferenceTarget,
    check_image_config,
    mesh_stage_settings,
    reference_scores,
    turned_to_front,
)
from ..stages.surface import init_geometry
from .io import check_inputs, check_output_path, check_prompt, finish_mesh, write_outputs
from .picture import picture_camera, picture_condition, read_picture


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


generate_config = config_maker(GenerateConfig, GENERATE_PRESETS)


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
        timings: dict[str, float] = {}
        r = cfg.scene_radius
        bbox = torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32)

        t0 = time.perf_counter()
        coarse_prior = load_prior(cfg.coarse_model, dev)
        image = reference is not None
        timings["load"] = time.perf_counter() - t0
        start = None  # image to 3D: where learning the picture's condition starts (None: the empty text)
        if reference is not None:
            t0 = time.perf_counter()
            start = read_picture(coarse_prior, prompt, negative_prompt, cfg.image, cfg.prompt, cfg.coarse_guidance,
                                 reference, gen, callback, cancel)
            timings["picture"] = time.perf_counter() - t0
        text = reference.caption if reference is not None and not prompt else prompt
        t0 = time.perf_counter()
        guidance = make_guidance(coarse_prior, text, negative_prompt, cfg.prompt, cfg.coarse_guidance, image)
        timings["load"] += time.perf_counter() - t0  # the model and its prompt's embeddings, as for every job
        if reference is not None and not text and cfg.image.condition != "none":
            t0 = time.perf_counter()
            picture_condition(cfg.image, guidance, reference, gen, callback, cancel, start)
            timings["picture"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        live = callback is not None  # live previews only for someone who listens
        objective: CoarseObjective = ScoreDistillation(guidance, cfg.coarse_sds)
        if reference is not None:
            size = cfg.image.coarse_size or cfg.coarse_sds.render_size
            target = ReferenceTarget.make(reference, cfg.image, cfg.coarse_sds.views, size, dev,
                                          cfg.image.coarse_edge_band)
            objective = CoarseReference(target, cfg.image, objective)
        model, _, renderer = train_coarse(cfg.coarse, objective, bbox, dev, gen,
                                          StageReporter("coarse", cfg.coarse.steps, callback, cancel, every=5),
                                          preview_fn=field_preview(r) if live else None, density_prior=density_prior)
        timings["coarse"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        same_model = not cfg.fine_model.model or cfg.fine_model.model == cfg.coarse_model.model
        if same_model:
            fine_guidance = SDSGuidance(coarse_prior, guidance.prompts, cfg.fine_guidance)
        else:
            del guidance, coarse_prior
            gc.collect()
            fine_guidance = make_guidance(load_prior(cfg.fine_model, dev), text, negative_prompt, cfg.prompt,
                                          cfg.fine_guidance, image)
            # another encoder: its condition learned again, from the empty text
            if reference is not None and not text and cfg.image.condition != "none":
                picture_condition(cfg.image, fine_guidance, reference, gen, callback, cancel)
        carve = partial(target.carve, margin=cfg.image.carve_margin) if image and cfg.image.carve else None
        geo = init_geometry(cfg.mesh, bbox, dev, model.density, carve, source="text", hull_fallback=False,
                            carve_after_cleaning=True)
        timings["mesh"] = time.perf_counter() - t0  # loading the fine prior, initialising DMTet
        name = prompt[:60] or (reference.name if reference is not None else "")
        mesh = fine_stage(cfg, fine_guidance, model, geo, gen, name, callback, cancel, timings, reference=reference)
        if reference is not None:
            mesh = turned_to_front(mesh, reference.azimuth)
        files = []
        # A result turned to the picture's front no longer matches its field: edits then start from the mesh.
        if state_out is not None and not (reference is not None and reference.azimuth):
            from ..state import state_files

            files = state_files(state_out, model, geo, to_dict(cfg), background=renderer.background)
        return mesh, timings, files


def fine_stage(cfg: GenerateConfig, guidance: SDSGuidance, field, geo, gen: torch.Generator,
               prompt: str, callback: ProgressCallback | None, cancel: CancelToken | None,
               timings: dict[str, float], stage: str = "mesh", reference: ReferenceImage | None = None
               ) -> TexturedMesh:
    """Magic3D's second half: the mesh stage on ``geo`` with ``field``'s colours (and, for image to 3D, the picture
    at its camera), then unwrap and bake; ``prompt`` names the mesh."""
    t0 = time.perf_counter()
    live = callback is not None  # live previews only for someone who listens
    watch = mesh_preview(cfg.scene_radius, background=cfg.mesh_sds.background, light=cfg.mesh_sds.light)
    objective: MeshObjectiveFn = MeshScoreDistillation(guidance, cfg.mesh.render_size, cfg=cfg.mesh_sds)
    if reference is not None:
        size = cfg.image.mesh_size or cfg.mesh.render_size
        target = ReferenceTarget.make(reference, cfg.image, cfg.mesh_sds.views, size, field.bbox.device)
        objective = MeshReference(target, cfg.image, objective)
    mesh_cfg = cfg.mesh if reference is None else mesh_stage_settings(cfg.mesh, cfg.image)
    train_mesh(mesh_cfg, objective, field, geo, gen,
               StageReporter(stage, cfg.mesh.steps, callback, cancel, every=5), preview_fn=watch if live else None)
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    keep = cfg.mesh.min_component_fraction
    if reference is not None:
        keep = max(keep, cfg.image.min_component_fraction)
    mesh = finish_mesh(geo, field.albedo, cfg.bake, keep, prompt[:60])
    timings["bake"] = time.perf_counter() - t0
    if cancel is not None:
        cancel.check()
    return mesh


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
    extras = {"generator": f"Dreamsmith {__version__}", "command": "generate", "prompt": prompt,
              "negative_prompt": negative_prompt, "seed": cfg.seed, "preset": preset,
              **{f"{k}_model": v for k, v in used_models(cfg).items()}}
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
    return {"out": str(out_path), "faces": int(len(mesh.faces)), "vertices": int(len(mesh.verts)),
            "seconds": timings, "config": to_dict(cfg), "state": str(state_out) if state else None,
            "models": used_models(cfg), **summary}
