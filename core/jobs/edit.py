"""Edit an existing mesh towards a new prompt, the way Magic3D edits: the object's shape starts the two-stage
pipeline (instead of the blob), which then optimises geometry and texture with the new prompt.

The mesh (any GLB/glTF/OBJ) is moved into the scene box (centred, bounding sphere scaled to ``fit_radius``),
its signed distance sampled on a grid (winding-number sign, so several pieces and small holes are fine) and
turned into the coarse field's starting density; the result goes back to the input's position and scale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..meshio import TexturedMesh
from ..priors.models import load_prior
from ..runtime.device import seeded_job
from ..runtime.errors import InputError
from ..runtime.events import StageReporter, StageTimes
from ..scene.state import load_state
from ..settings.presets import EDIT_PRESETS, config_maker
from ..stages.mesh import mesh_stage_preview
from ..stages.objectives import MeshScoreDistillation
from .generate import GenerateConfig, generate_mesh, make_guidance, used_models
from .io import check_inputs, read_input, result_extras, result_summary, write_outputs
from .pipeline import Pipeline, run_pipeline
from .retexture import Frame


@dataclass
class EditConfig(GenerateConfig):
    """An edit: a generate job that starts from a mesh.

    Attributes:
        fit_radius: Radius of the bounding sphere the mesh is scaled to inside the scene box.
        prior_resolution: Side of the grid the mesh's signed distance is sampled on.
        prior_sharpness: Raw density per world unit of depth (inside positive): the starting field is
            ``clamp(-sdf * prior_sharpness, -prior_clamp, prior_clamp)``.
        prior_clamp: Bound on the starting raw density, so the optimisation can still reshape it.
    """

    fit_radius: float = 0.6
    prior_resolution: int = 48
    prior_sharpness: float = 40.0
    prior_clamp: float = 8.0


edit_config = config_maker(EditConfig, EDIT_PRESETS)


def mesh_sdf(verts: Tensor, faces: Tensor, points: Tensor, budget: int = 2_000_000,
             reporter: StageReporter | None = None) -> Tensor:
    """Signed distance (negative inside) from ``points [N, 3]`` to a triangle mesh.

    The sign is the generalised winding number (robust to small holes and several pieces), the magnitude the
    distance to the nearest triangle vertex or centroid (fine on a grid whose cells are larger than the triangles).
    """
    tri = verts[faces]  # [F, 3, 3]
    surf = torch.cat([verts, tri.mean(1)])
    chunk = max(1, budget // max(len(faces), 1))  # points per pass: [chunk, F, 3] temporaries stay small
    parts = points.split(chunk)
    if reporter is not None:
        reporter.total = len(parts)
    out = []
    for k, p in enumerate(parts, 1):
        a, b, c = (tri[None, :, i] - p[:, None] for i in range(3))  # [n, F, 3]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        winding = torch.atan2(det, den).sum(-1) / (2 * torch.pi)
        dist = torch.cdist(p, surf).min(dim=1).values
        out.append(torch.where(winding > 0.5, -dist, dist))
        if reporter is not None:
            reporter.step(k)
    return torch.cat(out)


def density_prior(verts: np.ndarray, faces: np.ndarray, cfg: EditConfig,
                  reporter: StageReporter | None = None) -> Tensor:
    """The coarse field's starting raw density ``[R, R, R]`` (x, y, z) over the scene box, from a mesh in the
    scene frame (``reporter``: progress and cancellation, a step per chunk of grid points)."""
    r, n = cfg.scene_radius, cfg.prior_resolution
    axis = torch.linspace(-r, r, n)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    with torch.no_grad():
        sdf = mesh_sdf(torch.from_numpy(verts), torch.from_numpy(faces.astype(np.int64)), grid, reporter=reporter)
    return (-sdf * cfg.prior_sharpness).clamp(-cfg.prior_clamp, cfg.prior_clamp).reshape(n, n, n)


#: The most faces an edit starts from: its starting density costs about 1.5 s per 1,000 grid points at 20k faces.
MAX_EDIT_FACES = 50_000


def run_edit(mesh: str | os.PathLike | None, prompt: str, out: str | os.PathLike, cfg: EditConfig,
             negative_prompt: str = "", device: str = "auto", callback=None, cancel=None, preset: str = "custom",
             preview: str | os.PathLike | None = None, state: str | os.PathLike | None = None,
             world: list[float] | None = None) -> dict[str, Any]:
    """Edit an object towards ``prompt`` and write the result (GLB or OBJ), atomically.

    From ``state`` (a generate's saved field and geometry; when given it must be readable) only the mesh stage runs,
    fine-tuning that state with the new prompt, and ``world`` (a row-major 4x4, the object's transform) places the
    result; otherwise the mesh in ``mesh`` starts both stages and the result keeps its position and scale.

    Returns:
        A summary: output path, counts, seconds per stage, and what the edit started from.
    """
    prompt, negative_prompt, out_path, dev = check_inputs(prompt, negative_prompt, out, preview, device)
    if state:
        result, timings = _edit_state(Path(state), prompt, negative_prompt, cfg, dev, callback, cancel)
        if world is not None:
            m = np.asarray(world, dtype=np.float64).reshape(4, 4)
            result = result.moved(lambda v: v @ m[:3, :3].T + m[:3, 3])
        source = "state"
    else:
        if not mesh:
            raise InputError("Nothing to edit: give a mesh (the saved engine state is gone).")
        verts, faces, _ = read_input(mesh, MAX_EDIT_FACES)
        frame = Frame.fit(verts, cfg.fit_radius)
        start = density_prior(frame.to_prior(verts), faces, cfg, StageReporter("prepare", 1, callback, cancel))
        result, timings, _ = generate_mesh(prompt, negative_prompt, cfg, dev, callback, cancel, density_prior=start)
        result = result.moved(frame.from_prior)
        source = "mesh"
    extras = result_extras("edit", prompt=prompt, negative_prompt=negative_prompt, seed=cfg.seed, preset=preset,
                           edited_from=source, **{f"{k}_model": v for k, v in used_models(cfg).items()})
    write_outputs(result, out_path, preview, extras)
    return result_summary(out_path, len(result.faces), len(result.verts), cfg, timings, source=source,
                          models=used_models(cfg))


def _edit_state(state: Path, prompt: str, negative_prompt: str, cfg: EditConfig, dev: torch.device, callback,
                cancel) -> tuple[TexturedMesh, dict[str, float]]:
    """Magic3D's edit of a generated object: the saved field and geometry, the mesh stage with the new prompt."""
    with seeded_job(cfg.seed, dev) as gen:
        timings = StageTimes()
        with timings.stage("load"):
            field, geo, *_ = load_state(state, dev)
            model_cfg = cfg.fine_model if cfg.fine_model.model else cfg.coarse_model
            guidance = make_guidance(load_prior(model_cfg, dev), prompt, negative_prompt, cfg.prompt,
                                     cfg.fine_guidance)
        spec = Pipeline(
            name=prompt, mesh=cfg.mesh, bake=cfg.bake, keep_fraction=cfg.mesh.min_component_fraction,
            mesh_objective=lambda: MeshScoreDistillation(guidance, cfg.mesh.render_size, cfg=cfg.mesh_sds),
            start=(field, geo), mesh_stage="edit",
            mesh_preview=mesh_stage_preview(cfg.scene_radius, cfg.mesh_sds)
            if callback is not None else None)
        return run_pipeline(spec, field.bbox, dev, gen, timings, callback, cancel).mesh, timings
