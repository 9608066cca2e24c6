"""The coarse stage under score distillation: its learned background trains with the field, shows in the live
preview and survives the engine state; the iso level finds a faint object; priors the engine cannot use are
refused when they load, with what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from dreamsmith.core.priors.models import PriorConfig, load_prior
from dreamsmith.core.render.shading import ShadingConfig
from dreamsmith.core.runtime.errors import InputError, ModelError
from dreamsmith.core.runtime.events import StageReporter
from dreamsmith.core.settings.config import to_dict
from dreamsmith.eval.random_priors import unet_config, write_prior

RED = torch.tensor([0.9, 0.1, 0.1])


def _pull_to_red(rgb, azimuth, elevation, step, total, generator):
    """A stand-in objective: every pixel should be red (the background can only get there by learning)."""
    return {"loss_sds": (rgb - RED.to(rgb)).square().mean() * 100.0}


def _standard_coarse(steps: int):
    from dreamsmith.core.jobs.generate import generate_config

    cfg = generate_config("standard", {"coarse": {"steps": steps, "occupancy": {"resolution": 16},
                                                  "volume": {"n_samples_per_ray": 32}, "preview_every": steps},
                                       "coarse_sds": {"render_size": 12}})
    assert cfg.coarse_sds.shading.background == "learned"
    return cfg


def test_learned_background_trains_shows_in_previews_and_is_kept_in_the_state(tmp_path):
    from dreamsmith.core.geometry.dmtet import DMTetGeometry
    from dreamsmith.core.render.preview import field_preview
    from dreamsmith.core.scene.state import load_state, save_state
    from dreamsmith.core.stages.coarse import train_coarse
    from dreamsmith.core.stages.objectives import ScoreDistillation

    cfg = _standard_coarse(40)
    cfg.coarse.preview_every = 1
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])
    dirs = F.normalize(torch.randn(256, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    previews, seen = [], []
    preview = field_preview(1.0, size=16)

    def record(field, occupancy, renderer):
        with torch.no_grad():
            seen.append(renderer.background(dirs).mean(0))
        previews.append(preview(field, occupancy, renderer))
        return previews[-1]

    field, _, renderer = train_coarse(cfg.coarse, ScoreDistillation(_pull_to_red, cfg.coarse_sds), bbox,
                                      torch.device("cpu"), torch.Generator().manual_seed(0),
                                      StageReporter("coarse", 40, None, None), preview_fn=record)
    first, last = seen[0], seen[-1]  # the background after the first step and after the last
    assert last[0] > first[0] + 0.03 and (last[1:] < first[1:] - 0.03).all(), (first, last)
    corner = [p[0, 0].astype(float) for p in (previews[0], previews[-1])]  # pixels that see only background
    assert corner[1][0] > corner[0][0] + 5 and corner[1][1] < corner[0][1] - 5
    with torch.no_grad():
        bg = renderer.background(dirs)

    cfg.mesh.dmtet.resolution = 8
    geo = DMTetGeometry(cfg.mesh.dmtet, bbox)
    save_state(tmp_path / "s.safetensors", field, geo, to_dict(cfg), background=renderer.background)
    state = load_state(tmp_path / "s.safetensors", torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(state.background(dirs), bg)


def test_white_background_keeps_no_background_module(tmp_path):
    from dreamsmith.core.jobs.generate import generate_config
    from dreamsmith.core.stages.coarse import train_coarse
    from dreamsmith.core.stages.objectives import ScoreDistillation

    cfg = generate_config("draft", {"coarse": {"steps": 2, "occupancy": {"resolution": 16}}})
    _, _, renderer = train_coarse(cfg.coarse, ScoreDistillation(_pull_to_red, cfg.coarse_sds),
                                  torch.tensor([[-1.0] * 3, [1.0] * 3]), torch.device("cpu"),
                                  torch.Generator().manual_seed(0), StageReporter("coarse", 2, None, None))
    assert renderer.background is None


@pytest.mark.parametrize("background", ["white", "black", "random"])
def test_the_mesh_stage_composites_on_its_named_background(background):
    """The mesh stage names its backgrounds as the coarse stage does; ``random`` gives each view its own colour."""
    from dreamsmith.core.stages.mesh import MeshSDSConfig
    from dreamsmith.core.stages.objectives import MeshScoreDistillation

    seen = []

    def record(rgb, azimuth, elevation, step, total, generator):
        seen.append(rgb.detach())
        return {"loss_sds": rgb.sum() * 0}

    cfg = MeshSDSConfig(shading=ShadingConfig(mode="albedo", background=background))
    cfg.views.views_per_step = 3
    far = torch.tensor([[5.0, 5.0, 5.0], [5.1, 5.0, 5.0], [5.0, 5.1, 5.0]])  # a speck no view sees: all background
    MeshScoreDistillation(record, 16, cfg=cfg)(far, torch.tensor([[0, 1, 2]]), lambda p: torch.zeros_like(p), 1, 1,
                                               torch.Generator().manual_seed(0))
    corners = seen[0][:, 0, 0]  # [views, 3]
    if background == "random":
        assert corners.std(dim=0).min() > 0.01, corners  # one colour per view
    else:
        assert torch.allclose(corners, torch.full_like(corners, 1.0 if background == "white" else 0.0))


def _grid(n: int = 17):
    axis = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3), (n, n, n)


def test_iso_level_adapts_to_a_faint_object():
    from dreamsmith.core.stages.surface import initial_sdf

    verts, shape = _grid()
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])

    def faint_blob(x):  # density at most 2, where the configured level asks for 50 / diagonal ~ 14
        return (2.0 * (1.0 - x.norm(dim=-1) / 0.6)).clamp_min(0.0)

    from dreamsmith.core.stages.surface import auto_iso_level

    sdf = initial_sdf(faint_blob, verts, shape, bbox, iso_density=50.0, source="text")
    inside = sdf < 0
    assert inside.any() and sdf[verts.norm(dim=-1).argmin()] < 0  # the blob, centre inside
    assert torch.equal(inside, faint_blob(verts) > auto_iso_level(faint_blob(verts)))

    def strong_blob(x):  # a field that reaches the configured level keeps that level
        return 100.0 * faint_blob(x)

    strong = initial_sdf(strong_blob, verts, shape, bbox, iso_density=50.0, source="text")
    assert torch.equal(strong < 0, strong_blob(verts) > 50.0 / float((bbox[1] - bbox[0]).norm()))


@pytest.mark.parametrize("hull_fallback", [True, False])
def test_what_the_images_see_through_stays_open_through_the_cleaning(hull_fallback):
    """A solid slab with a channel three cells wide along z: the cleaning closes gaps that narrow (a coarse field's
    pinholes); carved again after it, where the images see background the start stays empty all the way through."""
    from dreamsmith.core.stages.surface import initial_sdf

    verts, shape = _grid(33)
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])
    cell = 2.0 / 32
    channel = (verts[:, 0].abs() < 1.6 * cell) & (verts[:, 1].abs() < 1.6 * cell)  # 3 x 3 cells wide

    def slab(x):
        solid = (x[:, :2].abs() < 0.6).all(-1) & (x[:, 2].abs() < 0.4)
        hole = (x[:, 0].abs() < 1.6 * cell) & (x[:, 1].abs() < 1.6 * cell)
        return 100.0 * (solid & ~hole).float()

    def hole(x):  # the images see background through the channel
        return ~((x[:, 0].abs() < 1.6 * cell) & (x[:, 1].abs() < 1.6 * cell))

    closed = initial_sdf(slab, verts, shape, bbox, iso_density=50.0, source="text")
    assert bool((closed[channel & (verts[:, 2].abs() < 0.3)] < 0).all())  # without the carve: capped
    carved = initial_sdf(slab, verts, shape, bbox, iso_density=50.0, source="text",
                         carve_fn=hole, hull_fallback=hull_fallback, carve_after_cleaning=True)
    assert bool((carved[channel] > 0).all())
    assert torch.equal(carved[~channel] < 0, closed[~channel] < 0)  # nothing else changes
    before_only = initial_sdf(slab, verts, shape, bbox, iso_density=50.0, source="text", carve_fn=hole,
                              hull_fallback=hull_fallback)
    assert torch.equal(before_only < 0, closed < 0)  # carved before the cleaning only: capped again


@pytest.mark.parametrize(("source", "words"), [("text", "prompt"), ("images", "transparent background")])
def test_an_empty_field_says_what_to_change_for_its_job(source, words):
    from dreamsmith.core.stages.surface import initial_sdf

    verts, shape = _grid()
    with pytest.raises(InputError, match=words):
        initial_sdf(lambda x: torch.zeros(len(x)), verts, shape, torch.tensor([[-1.0] * 3, [1.0] * 3]), 50.0,
                    source=source)


# ---------------------------------------------------------------------------------------------- unusable priors


@pytest.fixture(scope="module")
def if_like(tmp_path_factory):
    return write_prior("if", tmp_path_factory.mktemp("if") / "if-like", "tiny")


def test_the_real_structures_load(if_like, tmp_path):
    prior = load_prior(PriorConfig(model=str(if_like)), "cpu")
    assert prior.kind == "pixel" and prior.image_size == 64 and prior.unet.config.out_channels == 6
    sd = load_prior(PriorConfig(model=str(write_prior("sd", tmp_path / "sd-like", "tiny"))), "cpu")
    assert sd.kind == "latent" and sd.sample_size == 64 and sd.image_size == 512
    assert sd.vae.config.scaling_factor == pytest.approx(0.18215)


def _copy_with(src, dst, unet: dict | None = None, drop: str | None = None, t5_width: int | None = None):
    shutil.copytree(src, dst)
    if unet is not None:
        from diffusers import UNet2DConditionModel

        shutil.rmtree(dst / "unet")
        UNet2DConditionModel(**{**unet_config("if", "tiny"), **unet}).save_pretrained(dst / "unet")
    if t5_width is not None:
        from transformers import T5Config, T5EncoderModel

        shutil.rmtree(dst / "text_encoder")
        T5EncoderModel(T5Config(vocab_size=100, d_model=t5_width, d_kv=8, d_ff=32, num_layers=1,
                                num_heads=2)).save_pretrained(dst / "text_encoder")
    if drop is not None:
        index = json.loads((dst / "model_index.json").read_text())
        del index[drop]
        (dst / "model_index.json").write_text(json.dumps(index))
    return dst


@pytest.mark.parametrize(("change", "words"), [
    ({"unet": {"out_channels": 5}}, "outputs 5 channels"),
    ({"unet": {"in_channels": 4, "out_channels": 8}}, "takes 4 channels and the folder has no VAE"),
    ({"t5_width": 16}, "16-wide embeddings but its UNet reads 24"),
    ({"drop": "text_encoder"}, "no 'text_encoder'"),
])
def test_a_prior_the_engine_cannot_use_is_refused_at_load(if_like, tmp_path, change, words):
    bad = _copy_with(if_like, tmp_path / "bad", **change)
    with pytest.raises(ModelError, match=words):
        load_prior(PriorConfig(model=str(bad)), "cpu")
