"""Image to 3D in the engine: bad pictures refused before any work, the reference camera, the empty prompt, and the
picture's learned condition."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dreamsmith.core.app.cli import main
from dreamsmith.core.guidance.camera import camera_features
from dreamsmith.core.guidance.sds import SDSConfig, SDSGuidance
from dreamsmith.core.picture.inversion import InversionConfig, invert_picture
from dreamsmith.core.picture.load import load_reference
from dreamsmith.core.picture.reference_view import ImageConfig, reference_camera
from dreamsmith.core.priors.models import PriorConfig, load_prior
from dreamsmith.core.priors.prompts import PromptProcessor
from dreamsmith.core.runtime.errors import InputError
from dreamsmith.core.scene.cameras import ViewSamplerConfig
from dreamsmith.eval.pictures import render_picture, write_picture


def _bad_pictures(folder: Path) -> dict[str, Path]:
    out = {"missing": folder / "nothing.png"}
    out["empty"] = folder / "empty.png"
    out["empty"].write_bytes(b"")
    out["not an image"] = folder / "notes.png"
    out["not an image"].write_text("this is text, not a picture")
    out["gif"] = folder / "anim.gif"
    Image.new("RGB", (32, 32), (200, 0, 0)).save(out["gif"])
    out["no object"] = folder / "clear.png"
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(out["no object"])
    out["touches every border"] = folder / "full.png"
    Image.new("RGBA", (64, 64), (255, 0, 0, 255)).save(out["touches every border"])
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out["busy background"] = folder / "photo.jpg"
    Image.fromarray(noisy).save(out["busy background"])
    return out


def test_bad_pictures_exit_2_before_any_work(tmp_path, capsys):
    for what, path in _bad_pictures(tmp_path).items():
        out = tmp_path / "out.glb"
        assert main(["generate", "--image", str(path), "--model", "/does/not/exist", "--out", str(out),
                     "--quiet"]) == 2, what
        err = capsys.readouterr().err
        # The picture is refused, not the (missing) model: nothing was loaded, nothing written.
        assert "error:" in err and "does/not/exist" not in err and str(path.name) in err, (what, err)
        assert not out.exists() and not list(tmp_path.glob("*.glb")), what


def test_bad_camera_and_missing_inputs_exit_2(tmp_path, capsys):
    pic = write_picture(tmp_path / "cube.png", render_picture("cube", "red", 30, 20, size=64))
    out = str(tmp_path / "out.glb")
    for args in (["--fov", "200"], ["--elevation", "90"], ["--elevation", "nan"]):
        assert main(["generate", "--image", str(pic), *args, "--out", out, "--quiet"]) == 2, args
        assert "degrees" in capsys.readouterr().err
    bad_words = tmp_path / "words.json"
    bad_words.write_text('{"colour": ["red"]}')  # no list for {object}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"image": {"condition": "caption", "caption": {"words_file": str(bad_words)}}}))
    assert main(["generate", "--image", str(pic), "--config", str(config), "--model", "/does/not/exist",
                 "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no list of words named 'object'" in err and "does/not/exist" not in err, err  # before the model
    assert main(["generate", "--out", out, "--quiet"]) == 2  # neither a prompt nor a picture
    assert "prompt is empty" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.glb"))


@pytest.mark.parametrize("elevation", [0.0, 30.0, -10.0])
def test_reference_camera_looks_from_the_front_at_the_pictures_elevation(elevation):
    views = ViewSamplerConfig(distance_min=1.5, distance_max=2.5, fov_min=40, fov_max=60)
    cam = reference_camera(ImageConfig(elevation=elevation), views, 64)
    centre = cam.centers[0].double()
    el = np.radians(elevation)
    assert torch.allclose(centre, torch.tensor([0.0, -2.0 * np.cos(el), 2.0 * np.sin(el)], dtype=torch.float64),
                          atol=1e-5)
    f = 0.5 * 64 / np.tan(np.radians(50.0) / 2)  # fov 0: the middle of the views' range
    assert abs(float(cam.fy[0]) - f) < 1e-3
    assert abs(float(reference_camera(ImageConfig(fov=30.0), views, 64).fy[0]) - 0.5 * 64 / np.tan(np.radians(15)))\
        < 1e-3


def test_jittered_reference_rays_see_the_picture_where_they_go():
    """Each jittered ray is paired with the picture's value at the point of the view it passes through: a picture
    whose top-right corner is the object (its edges through pixel centres of the 32 px view), looked up with
    random offsets, gives mask 1 exactly for the rays that the camera sends into that corner (away from its
    edges, where the lookup blends)."""
    from dreamsmith.core.picture.load import ReferenceImage
    from dreamsmith.core.picture.reference_view import ReferenceTarget

    mask = np.zeros((256, 256), np.float32)
    mask[:100, 140:] = 1.0  # edges at x = 17.5, y = 12.5 of 32 px
    ref = ReferenceImage(rgb=np.ones((256, 256, 3), np.float32), mask=mask, name="quarter.png", had_alpha=True)
    target = ReferenceTarget.make(ref, ImageConfig(elevation=20.0), ViewSamplerConfig(), 32, torch.device("cpu"))
    offsets, _, got, _ = target.jittered(torch.Generator().manual_seed(0))
    assert offsets.abs().max() <= 0.5 and offsets.std() > 0.2
    cam = target.cameras
    _, d = cam.rays(offsets)
    local = torch.einsum("ij,hwj->hwi", cam.c2w[0, :3, :3].T, d[0])  # camera frame: x right, y up, -z forward
    x = cam.fx[0] * local[..., 0] / -local[..., 2] + cam.cx[0]
    y = cam.cy[0] - cam.fy[0] * local[..., 1] / -local[..., 2]
    inside = (x >= 17.5) & (y < 12.5)
    clear = ((x - 17.5).abs() > 0.1) & ((y - 12.5).abs() > 0.1)
    assert clear.sum() > 900
    assert torch.equal(got[0][clear] > 0.5, inside[clear])
    assert torch.allclose(got[0][clear], inside[clear].float(), atol=1e-4)


def test_the_coarse_edge_band_leaves_out_the_rays_along_the_outline():
    """With an edge band of one render pixel, the jittered rays within a pixel of the outline weigh 0 and all others
    1; the band needs jittered rays."""
    from dreamsmith.core.picture.load import ReferenceImage
    from dreamsmith.core.picture.reference_view import ReferenceTarget, check_image_config
    from dreamsmith.core.runtime.errors import ConfigError

    mask = np.zeros((256, 256), np.float32)
    mask[64:192, 64:192] = 1.0  # a square, its edges at 8 and 24 of 32 px
    ref = ReferenceImage(rgb=np.ones((256, 256, 3), np.float32), mask=mask, name="square.png", had_alpha=True)
    target = ReferenceTarget.make(ref, ImageConfig(), ViewSamplerConfig(), 32, torch.device("cpu"), edge_band=1.0)
    offsets, _, _, weight = target.jittered(torch.Generator().manual_seed(0))
    centres = torch.arange(32, dtype=torch.float32) + 0.5
    x, y = centres[None, :] + offsets[0, ..., 0], centres[:, None] + offsets[0, ..., 1]
    inside = (x > 8) & (x < 24) & (y > 8) & (y < 24)
    edge = torch.where(inside, torch.stack([x - 8, 24 - x, y - 8, 24 - y]).amin(0),  # to the nearest edge
                       (x.clamp(8, 24) - x).abs() + (y.clamp(8, 24) - y).abs())  # to the square (as dilation steps)
    far, near = edge > 1.25, edge < 0.75  # the band's own edge is a staircase of the picture's pixels
    assert bool((weight[0][far] > 0.999).all()) and bool((weight[0][near] < 1e-3).all())
    assert near.sum() > 50 and far.sum() > 500
    assert ReferenceTarget.make(ref, ImageConfig(), ViewSamplerConfig(), 32, torch.device("cpu")).jittered(
        torch.Generator())[3] is None
    with pytest.raises(ConfigError, match="ray_jitter"):
        check_image_config(ImageConfig(coarse_edge_band=1.0))
    check_image_config(ImageConfig(coarse_edge_band=1.0, ray_jitter=True))


def test_the_picture_carves_what_its_camera_sees_as_background():
    """A ring seen from 20 degrees up: points on the rays through its hole are carved at every depth, points on the
    rays through the ring are kept, as are points outside the picture's frame and behind the camera; the margin
    grows the mask into the hole."""
    from dreamsmith.core.picture.load import ReferenceImage
    from dreamsmith.core.picture.reference_view import ReferenceTarget

    yy, xx = np.mgrid[:256, :256] + 0.5
    r = np.hypot(xx - 128, yy - 128)
    mask = ((r > 40) & (r < 100)).astype(np.float32)
    ref = ReferenceImage(rgb=np.ones((256, 256, 3), np.float32), mask=mask, name="ring.png", had_alpha=True)
    target = ReferenceTarget.make(ref, ImageConfig(elevation=20.0), ViewSamplerConfig(), 32, torch.device("cpu"))
    cam = target.cameras
    eye, right, up, back = cam.c2w[0, :3, 3], cam.c2w[0, :3, 0], cam.c2w[0, :3, 1], cam.c2w[0, :3, 2]
    depths = torch.linspace(0.3, 4.0, 12)[:, None]

    def along(dx, dy=0.0, sign=1.0):  # points on the ray through (dx, dy) picture pixels right of / above the centre
        k = 32 / 256 / float(cam.fx[0])
        return eye + sign * depths * (-back + dx * k * right + dy * k * up)

    assert not target.carve(along(0)).any()  # the hole's centre
    assert target.carve(along(70)).all() and target.carve(along(0, -60)).all()  # on the ring
    assert not target.carve(along(115)).any()  # beyond it
    assert target.carve(along(0, sign=-1.0)).all()  # behind the camera
    assert target.carve(along(400)).all()  # outside the picture's frame
    # 6 px inside the hole's edge: a margin of 10 px of 256 fills it; the centre stays carved
    assert not target.carve(along(34)).any() and target.carve(along(34), margin=10 / 256).all()
    assert not target.carve(along(0), margin=10 / 256).any()


@pytest.mark.parametrize("carve", [True, False])
def test_a_job_carves_its_mesh_start_with_the_picture(tmp_path, capsys, monkeypatch, carve):
    """By default the mesh stage starts from the coarse field carved by the picture at its margin: the tet grid's
    points are judged by the reference view, and none that it sees as background is inside the start."""
    from dreamsmith.core.picture import reference_view
    from dreamsmith.core.stages import surface
    from tests.core.batch_inputs import TINY

    judged, starts = [], []
    real_carve, real_sdf = reference_view.ReferenceTarget.carve, surface.initial_sdf

    def record_carve(self, points, margin=0.0):
        keep = real_carve(self, points, margin)
        judged.append((points, keep, margin))
        return keep

    def record_sdf(*args, **kwargs):
        sdf = real_sdf(*args, **kwargs)
        starts.append(sdf)
        return sdf

    monkeypatch.setattr(reference_view.ReferenceTarget, "carve", record_carve)
    monkeypatch.setattr(surface, "initial_sdf", record_sdf)
    pic = write_picture(tmp_path / "torus.png", render_picture("torus", "red", 30.0, 35.0, size=64))
    tiny = TINY["image"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(tiny, image=dict(tiny["image"], carve=carve))))
    assert main(["generate", "--image", str(pic), "--config", str(config), "--out", str(tmp_path / "torus.glb"),
                 "--device", "cpu", "--quiet"]) == 0
    assert len(starts) == 1
    if not carve:
        assert not judged
        return
    keep = torch.cat([k for _, k, _ in judged])
    assert {m for *_, m in judged} == {ImageConfig().carve_margin}
    assert len(keep) == len(starts[0]) and not keep.all() and keep.any()
    assert bool((starts[0][~keep] > 0).all())  # carved points are outside the start


def test_a_job_with_jittered_rays_and_an_outline_band_runs(tmp_path, capsys, monkeypatch):
    """The options reach the coarse stage: every reference render there goes through jittered rays (offsets within
    half a pixel), and the job ends with its reference-view scores."""
    import inspect

    from dreamsmith.core.render import volume
    from tests.core.batch_inputs import TINY

    seen = []
    real = volume.render_image

    def record(*args, **kwargs):
        seen.append(inspect.signature(real).bind(*args, **kwargs).arguments.get("offsets"))
        return real(*args, **kwargs)

    monkeypatch.setattr(volume, "render_image", record)
    pic = write_picture(tmp_path / "cube.png", render_picture("cube", "red", 30.0, 10.0, size=64))
    tiny = TINY["image"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(tiny, image=dict(tiny["image"], ray_jitter=True, coarse_edge_band=1.0))))
    assert main(["generate", "--image", str(pic), "--config", str(config), "--out", str(tmp_path / "cube.glb"),
                 "--device", "cpu", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= summary["reference"]["iou"] <= 1.0, summary
    jittered = [o for o in seen if o is not None]
    assert len(jittered) == tiny["coarse"]["steps"] and all(o.abs().max() <= 0.5 for o in jittered)
    assert len({float(o.sum()) for o in jittered}) == len(jittered)  # new offsets every step


@pytest.fixture(scope="module")
def demo_guidance():
    prior = load_prior(PriorConfig(model="demo"), torch.device("cpu"))
    prompts = PromptProcessor(prior, "", "", allow_empty=True)
    return prior, prompts, SDSGuidance(prior, prompts, SDSConfig(guidance_scale=20.0))


def test_an_empty_prompt_is_refused_unless_allowed(demo_guidance):
    prior, prompts, _ = demo_guidance
    with pytest.raises(InputError, match="prompt is empty"):
        PromptProcessor(prior, "  ", "")
    assert prompts.texts == [""] * 4  # no view words: the conditional half is the unconditional one
    assert torch.equal(prompts.cond, prompts.uncond)


def _denoising_loss(guidance, x0: torch.Tensor, emb: torch.Tensor, elevation: float, n: int = 96) -> float:
    """The guided denoising error at the stage's guidance scale: what the inversion minimises."""
    gen = torch.Generator().manual_seed(123)
    t = torch.randint(20, 980, (n,), generator=gen)
    noise = torch.randn((n, *x0.shape[1:]), generator=gen)
    a = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    cam = camera_features(torch.zeros(n), torch.full((n,), elevation), guidance.prior.camera_features)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    empty = guidance.prompts.uncond[0]
    with torch.no_grad():
        cond, uncond = (guidance.prior.unet(x_t, t, encoder_hidden_states=e[None].expand(n, -1, -1),
                                            class_labels=cam).sample for e in (emb, empty))
    pred = uncond + guidance.cfg.guidance_scale * (cond - uncond)
    return F.mse_loss(pred, noise).item()


def test_the_pictures_condition_explains_the_picture_better_than_no_text(demo_guidance, tmp_path):
    _, prompts, guidance = demo_guidance
    ref = load_reference(write_picture(tmp_path / "cone.png", render_picture("cone", "blue", 40, 10, size=96)))
    picture = torch.from_numpy(ref.rgb)
    emb = invert_picture(guidance, picture, 0.0, 10.0, InversionConfig(steps=80), torch.Generator().manual_seed(0))
    assert emb.shape == prompts.uncond[0].shape and torch.isfinite(emb).all()
    x0 = guidance.encode(picture[None], torch.Generator().manual_seed(0))
    learned, empty = (_denoising_loss(guidance, x0, e, 10.0) for e in (emb, prompts.uncond[0]))
    assert learned < 0.95 * empty, (learned, empty)


def test_the_picture_corrects_a_wrong_reading_it_starts_from(demo_guidance, tmp_path):
    """Learning from a reading (here the wrong one, "a blue cube" for a blue cone) starts at its words and ends
    explaining the picture better than they do."""
    prior, prompts, guidance = demo_guidance
    ref = load_reference(write_picture(tmp_path / "cone.png", render_picture("cone", "blue", 40, 10, size=96)))
    picture = torch.from_numpy(ref.rgb)
    wrong = prompts.embed(["a blue cube"])[0]
    start = invert_picture(guidance, picture, 0.0, 10.0, InversionConfig(steps=0), torch.Generator(), start=wrong)
    assert torch.equal(start, wrong)
    emb = invert_picture(guidance, picture, 0.0, 10.0, InversionConfig(steps=80), torch.Generator().manual_seed(0),
                         start=wrong)
    x0 = guidance.encode(picture[None], torch.Generator().manual_seed(0))
    learned, words = (_denoising_loss(guidance, x0, e, 10.0) for e in (emb, wrong))
    assert learned < 0.95 * words, (learned, words)


def test_the_prior_finds_which_way_a_cube_is_turned(demo_guidance, tmp_path):
    """The camera-conditioned toy prior draws cubes face-on at azimuth 0: a cube seen from 30 degrees is explained
    best from 30 (or a quarter turn from it: the cube's symmetry); a sphere gives no reason to turn."""
    from dreamsmith.core.picture.inversion import estimate_azimuth

    _, _, guidance = demo_guidance
    ref = load_reference(write_picture(tmp_path / "cube.png", render_picture("cube", "red", 30, 20)))
    az = estimate_azimuth(guidance, torch.from_numpy(ref.rgb), 20.0, torch.Generator().manual_seed(0))
    assert min(abs((az - 30.0 + 45.0) % 90.0 - 45.0), 90.0) <= 10.0, az


def test_turned_to_front_turns_about_z_only():
    from dreamsmith.core.meshio import TexturedMesh
    from dreamsmith.core.picture.reference_view import turned_to_front

    v = np.array([[0.0, -1.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    mesh = TexturedMesh(v, np.array([[0, 1, 2]]), np.zeros((3, 2), np.float32), None, np.zeros((2, 2, 3), np.uint8))
    out = turned_to_front(mesh, 90.0)  # the view from azimuth 90 (the +X side) becomes the front (-Y side)
    assert np.allclose(out.verts, [[-1.0, 0.0, 0.5], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]], atol=1e-6)
    assert turned_to_front(mesh, 0.0) is mesh


def test_a_picture_sets_the_stages_own_settings_under_the_users():
    """Image to 3D's settings of the stages are the stage configs', for pictures only, and a user's override wins."""
    from dreamsmith.core.jobs import JOBS
    from dreamsmith.core.jobs.generate import generate_config

    assert generate_config("draft").mesh.min_component_fraction == 0.05  # text: the mesh stage's own
    assert generate_config("draft", picture=True).mesh.min_component_fraction == 0.3  # one object in the picture
    assert generate_config("draft", {"mesh": {"min_component_fraction": 0.1}}, picture=True).mesh \
        .min_component_fraction == 0.1
    gen = JOBS["generate"]
    assert gen.config("standard", None, {"image": "x.png"}).mesh.min_component_fraction == 0.3
    assert gen.config("standard", None, {"prompt": "a cube"}).mesh.min_component_fraction == 0.05
    assert not hasattr(ImageConfig(), "min_component_fraction")  # no second copy
    # the draft scores a picture's other views more gently in the mesh stage (docs/experiments.md); GPU presets keep
    # the recipe's guidance
    assert generate_config("draft", picture=True).fine_guidance.guidance_scale == 5.0
    assert generate_config("draft").fine_guidance.guidance_scale == 20.0
    assert generate_config("standard", picture=True).fine_guidance == generate_config("standard").fine_guidance
    # The draft's stiffer mesh stage (text, pictures and edits alike: docs/experiments.md); the GPU presets': Magic3D's
    assert (generate_config("draft").mesh.normal_weight, generate_config("standard").mesh.normal_weight) == (100, 10000)
    # ... and for pictures it weighs the angle between faces (flat faces, sharp edges); text and the GPU presets keep
    # 1 - cos (threestudio's)
    assert generate_config("draft", picture=True).mesh.normal_form == "angle"
    assert generate_config("draft").mesh.normal_form == "cosine"
    assert generate_config("standard", picture=True).mesh.normal_form == "cosine"


def test_the_draft_coarse_stage_skips_faint_samples_normals(tmp_path, monkeypatch):
    """The draft preset's coarse volume shades samples under 1 % of their pixel without normals, for text and
    pictures (measured and taken: README); edits and real models' presets keep the volume's own 0.001; the threshold
    is checked and a config's own reaches a picture's coarse stage unchanged."""
    from dreamsmith.core.jobs import generate
    from dreamsmith.core.jobs.edit import edit_config
    from dreamsmith.core.render.volume import VolumeConfig
    from dreamsmith.core.runtime.errors import ConfigError
    from tests.core.batch_inputs import TINY

    assert generate.generate_config("draft").coarse.volume.normal_min_weight == 0.01
    assert edit_config("draft").coarse.volume.normal_min_weight == VolumeConfig().normal_min_weight  # measured
    assert generate.generate_config("standard").coarse.volume.normal_min_weight == VolumeConfig().normal_min_weight
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="normal_min_weight"):
            VolumeConfig(normal_min_weight=bad)

    from dreamsmith.core.jobs import pipeline

    seen, real = [], pipeline.train_coarse

    def record(ccfg, *args, **kwargs):
        seen.append(ccfg.volume.normal_min_weight)
        return real(ccfg, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_coarse", record)
    pic = write_picture(tmp_path / "cone.png", render_picture("cone", "blue", 30.0, 10.0, size=64))
    tiny = TINY["image"]
    config = tmp_path / "config.json"
    coarse = tiny.get("coarse", {})
    config.write_text(json.dumps(dict(tiny, coarse=dict(coarse, volume=dict(coarse.get("volume", {}),
                                                                            normal_min_weight=0.05)))))
    assert main(["generate", "--image", str(pic), "--config", str(config), "--out", str(tmp_path / "cone.glb"),
                 "--device", "cpu", "--quiet"]) == 0
    assert seen == [0.05]


def test_caption_words_are_those_the_tokenizer_can_spell(demo_guidance, tmp_path):
    from dreamsmith.core.picture.caption import CaptionConfig, slot_words
    from dreamsmith.core.runtime.errors import ConfigError

    tok = demo_guidance[0].tokenizer
    words = slot_words(CaptionConfig(), tok)  # the built-in lists, filtered to the toy prior's twelve words
    assert words == {"colour": ["red", "green", "blue", "yellow"], "object": ["cube", "sphere", "cone", "torus"]}
    own = tmp_path / "words.json"
    own.write_text('{"shape": ["torus", "teapot", "cube"]}')
    assert slot_words(CaptionConfig(template="a {shape}", words_file=str(own)), tok) == {"shape": ["torus", "cube"]}
    for template, text, match in (("a {colour} {thing}", '{"colour": ["red"]}', "no list of words named 'thing'"),
                                  ("a {shape}", '{"shape": ["teapot"]}', "knows none"),
                                  ("a {shape}", "not json", "Cannot read"), ("a thing", "{}", "no {slot}")):
        own.write_text(text)
        with pytest.raises(ConfigError, match=match):
            slot_words(CaptionConfig(template=template, words_file=str(own)), tok)


@pytest.mark.parametrize(("shape", "colour", "azimuth", "elevation"), [
    ("cube", "green", 200.0, 10.0), ("torus", "yellow", 60.0, 20.0), ("cone", "red", 300.0, 0.0)])
def test_the_prior_captions_the_picture(demo_guidance, tmp_path, shape, colour, azimuth, elevation):
    """Of the captions the prior can read, the one it denoises the picture best under names its shape and colour
    (the azimuth found first, as the engine does)."""
    from dreamsmith.core.picture.caption import CaptionConfig, find_caption
    from dreamsmith.core.picture.inversion import estimate_azimuth

    _, _, guidance = demo_guidance
    ref = load_reference(write_picture(tmp_path / "pic.png", render_picture(shape, colour, azimuth, elevation)))
    picture, gen = torch.from_numpy(ref.rgb), torch.Generator().manual_seed(0)
    az = estimate_azimuth(guidance, picture, elevation, gen)
    assert find_caption(guidance, picture, az, elevation, CaptionConfig(), gen) == f"a {colour} {shape}"


def _read_caption(guidance, tmp_path: Path, shape: str, colour: str, azimuth: float, elevation: float, cfg):
    """The caption the prior reads from a sweep-style picture (a PNG), its azimuth estimated first, as a job does."""
    from dreamsmith.core.picture.caption import read_caption
    from dreamsmith.core.picture.inversion import estimate_azimuth

    ref = load_reference(write_picture(tmp_path / f"{shape}.png", render_picture(shape, colour, azimuth, elevation)))
    picture, gen = torch.from_numpy(ref.rgb), torch.Generator().manual_seed(0)
    return read_caption(guidance, picture, estimate_azimuth(guidance, picture, elevation, gen), elevation, cfg, gen)


def test_a_narrow_caption_is_set_aside(demo_guidance, tmp_path):
    """With a margin of 1.5 (above every wrong reading measured on the sweep's pictures, README) the sweep's red cube
    is read as one clearly; its blue sphere, seen from a little below, is read as a cone by almost no margin, so
    that caption is set aside (the picture's condition is learned instead)."""
    from dreamsmith.core.picture.caption import CaptionConfig

    _, _, guidance = demo_guidance
    clear_only = CaptionConfig(min_margin=1.5)
    readings = {view[0]: _read_caption(guidance, tmp_path, *view, CaptionConfig())
                for view in (("cube", "red", 229.0, 3.0), ("sphere", "blue", 309.0, -8.0))}
    assert readings["cube"].text == "a red cube" and readings["cube"].clear(clear_only), readings
    assert not readings["sphere"].clear(clear_only), readings


def test_the_drafts_high_noise_caption_reads_the_sweeps_hard_pictures(demo_guidance, tmp_path):
    """The draft reads a picture's caption from high noise only (timesteps 0.6-0.98), where the object's words
    carry its shape (README): the sweep's yellow cube from 26 degrees above and its red sphere from 37 (in the jobs,
    the default range, 0.1-0.9, read them as a cube by a narrow margin and as a cone) are read right and clearly.
    (The torus seen from 39 degrees above reads as a cone by 0.41 to 0.50 across runs and machines, on the threshold
    itself: not asserted.) Real models' presets keep the learned condition."""
    from dreamsmith.core.jobs.generate import generate_config

    draft = generate_config("draft").image
    assert draft.condition == "caption" and (draft.caption.min_step_percent, draft.caption.max_step_percent) == (
        0.6, 0.98) and draft.caption.min_margin == 0.5
    assert {generate_config(p).image.condition for p in ("fast", "standard", "high")} == {"embedding"}
    _, _, guidance = demo_guidance
    readings = {view[0]: _read_caption(guidance, tmp_path, *view, draft.caption)
                for view in (("cube", "yellow", 218.0, 26.0), ("sphere", "red", 196.0, 37.0))}
    assert readings["cube"].text == "a yellow cube" and readings["cube"].clear(draft.caption), readings
    assert readings["sphere"].text == "a red sphere" and readings["sphere"].clear(draft.caption), readings


def test_a_set_aside_caption_is_reported_and_the_condition_learned(tmp_path, capsys):
    """No caption wins by a margin this wide: the job learns the picture's condition, names no caption, and
    reports the one it set aside."""
    import pygltflib

    from tests.core.batch_inputs import TINY

    pic = write_picture(tmp_path / "cone.png", render_picture("cone", "green", 30.0, 10.0, size=64))
    config = tmp_path / "config.json"
    tiny = TINY["image"]
    config.write_text(json.dumps(dict(tiny, image=dict(tiny["image"], condition="caption",
                                                       caption={"batch": 4, "min_margin": 1e9}))))
    out = tmp_path / "cone.glb"
    assert main(["generate", "--image", str(pic), "--config", str(config), "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    extras = pygltflib.GLTF2().load(str(out)).nodes[0].extras
    assert "caption" not in summary and "caption" not in extras and extras["image"] == "cone.png", summary
    aside = summary["caption_set_aside"]
    assert re.fullmatch(r"a (red|green|blue|yellow) (cube|sphere|cone|torus)", aside["caption"]), aside
    assert 0 <= aside["margin"] < 1e9


def test_a_set_aside_caption_can_start_the_learned_condition(tmp_path, capsys, monkeypatch):
    """With ``inversion.from_caption`` the picture's condition is learned from the set-aside reading's words."""
    from dreamsmith.core.picture import condition as job
    from tests.core.batch_inputs import TINY

    starts = []
    real = job.condition_on_picture

    def record(*args, **kwargs):
        starts.append(args[-1] if len(args) == 8 else kwargs.get("start"))
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "condition_on_picture", record)
    pic = write_picture(tmp_path / "cube.png", render_picture("cube", "red", 30.0, 10.0, size=64))
    tiny = TINY["image"]
    image = dict(tiny["image"], condition="caption", caption={"batch": 4, "min_margin": 1e9},
                 inversion=dict(tiny["image"].get("inversion", {}), from_caption=True))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(tiny, image=image)))
    assert main(["generate", "--image", str(pic), "--config", str(config), "--out", str(tmp_path / "cube.glb"),
                 "--device", "cpu", "--quiet"]) == 0
    aside = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["caption_set_aside"]["caption"]
    prior = load_prior(PriorConfig(model="demo"), torch.device("cpu"))
    words = PromptProcessor(prior, "", "", allow_empty=True).embed([aside])[0]
    assert len(starts) == 1 and starts[0] is not None and torch.allclose(starts[0].cpu(), words), aside


def test_caption_search_slot_by_slot_finds_the_same_caption(demo_guidance, tmp_path):
    """With more combinations than ``exhaustive``, the slots are searched in turn: same answer on a clear picture."""
    from dreamsmith.core.picture.caption import CaptionConfig, find_caption

    _, _, guidance = demo_guidance
    ref = load_reference(write_picture(tmp_path / "pic.png", render_picture("cube", "blue", 20.0, 10.0)))
    picture = torch.from_numpy(ref.rgb)
    full, by_slot = (find_caption(guidance, picture, 20.0, 10.0, CaptionConfig(exhaustive=n),
                                  torch.Generator().manual_seed(0)) for n in (256, 1))
    assert full == by_slot == "a blue cube"


@pytest.mark.parametrize("kind", ["if", "sd"])
def test_caption_search_runs_on_priors_shaped_like_the_real_ones(tmp_path, kind):
    """T5 (IF-like pixel prior) and CLIP BPE (SD-like latent prior, x8 VAE) spell every listed word, so there are
    far more captions than ``exhaustive``: the slots are searched in turn and the answer is a caption of the
    template's words (random weights: which one is not the point). The search runs on six words a slot (36
    captions, more than ``exhaustive``): at the real sizes every UNet call is a 64x64 latent, and the built-in lists'
    hundreds of candidates would take minutes here."""
    from dreamsmith.core.picture.caption import CaptionConfig, caption_candidates, find_caption, word_lists
    from dreamsmith.eval.random_priors import write_prior

    prior = load_prior(PriorConfig(model=str(write_prior(kind, tmp_path / kind, "tiny"))), torch.device("cpu"))
    guidance = SDSGuidance(prior, PromptProcessor(prior, "", "", allow_empty=True), SDSConfig(guidance_scale=20.0))
    builtin = CaptionConfig(batch=2, sweeps=1)
    lists = word_lists(builtin)
    assert caption_candidates(builtin, prior.tokenizer) == len(lists["colour"]) + len(lists["object"])  # all spelt
    lists = {slot: words[:6] for slot, words in lists.items()}
    (tmp_path / "words.json").write_text(json.dumps(lists))
    cfg = CaptionConfig(batch=2, sweeps=1, words_file=str(tmp_path / "words.json"), exhaustive=16)
    picture = torch.from_numpy(render_picture("cone", "red", 30.0, 10.0, size=64)[..., :3].astype(np.float32) / 255)
    caption = find_caption(guidance, picture, 0.0, 10.0, cfg, torch.Generator().manual_seed(0))
    colour, noun = caption.split()[1:]
    assert caption.startswith("a ") and colour in lists["colour"] and noun in lists["object"], caption
