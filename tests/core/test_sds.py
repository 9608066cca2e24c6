"""Prompt processing and score distillation on tiny random priors (built by test_models.py's builders)."""

from __future__ import annotations

import gc
import json
import shutil
import weakref

import pytest
import torch
from test_models import build_latent_prior, build_pixel_prior  # tests/core is on sys.path under pytest

from dreamsmith.core.guidance.camera import CAMERA_FEATURES, camera_features, mirrored_azimuth
from dreamsmith.core.guidance.sds import SDSConfig, SDSGuidance, max_step_percent
from dreamsmith.core.priors.models import PriorConfig, load_prior
from dreamsmith.core.priors.prompts import PromptConfig, PromptProcessor, clear_embedding_cache, view_index
from dreamsmith.core.runtime.errors import ConfigError, InputError, ModelError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sds_priors")
    return build_pixel_prior(root / "pixel"), build_latent_prior(root / "latent")


@pytest.fixture(scope="module")
def pixel(folders):
    return load_prior(PriorConfig(model=str(folders[0])), "cpu")


@pytest.fixture(scope="module")
def latent(folders):
    return load_prior(PriorConfig(model=str(folders[1])), "cpu")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_embedding_cache()
    yield
    clear_embedding_cache()


class _CountCalls:
    """Counts forward calls of a module through a hook."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


# ---------------------------------------------------------------------------------------------- prompts


def test_view_index_follows_the_camera_convention():
    az = torch.tensor([0.0, 45.0, 46.0, 90.0, 134.0, 135.0, 180.0, 225.0, 226.0, 270.0, 314.0, 315.0, -30.0, 720.0,
                       180.0])
    el = torch.tensor([0.0] * 14 + [61.0])
    expected = [0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1, 0, 0, 0, 3]
    assert view_index(az, el).tolist() == expected


def test_embeddings_are_computed_once_and_cached_on_disk(pixel, tmp_path):
    counter = _CountCalls(pixel.text_encoder)
    try:
        cfg = PromptConfig(cache_dir=str(tmp_path / "emb"))
        first = PromptProcessor(pixel, "a red cube", "blurry", cfg)
        assert counter.n == 1  # every view text and the negative prompt in one batch
        second = PromptProcessor(pixel, "  a red cube ", "blurry", cfg)
        assert counter.n == 1  # same model, same texts: nothing encoded again
        PromptProcessor(pixel, "a blue torus", "blurry", cfg)
        assert counter.n == 2
        assert torch.equal(first.cond, second.cond) and torch.equal(first.uncond, second.uncond)
        assert len(list((tmp_path / "emb").glob("*.safetensors"))) == 4 + 1 + 4  # 2 prompts x 4 views + negative
        clear_embedding_cache()  # a new process: the disk cache answers
        third = PromptProcessor(pixel, "a red cube", "blurry", cfg)
        assert counter.n == 2
        assert torch.equal(third.cond, first.cond)
    finally:
        counter.handle.remove()


def test_view_dependent_prompts_pick_the_right_embedding(latent):
    proc = PromptProcessor(latent, "a red cube", cfg=PromptConfig(view_negatives=True))
    assert proc.texts[1] == "a red cube, side view" and "back view" in proc.negative_texts[0]
    views = proc.view_index(torch.tensor([180.0, 0.0, 90.0, 10.0]), torch.tensor([0.0, 0.0, 0.0, 80.0]))
    assert views.tolist() == [2, 0, 1, 3]
    uncond, cond = proc.embeddings(views)
    texts = ["a red cube, back view", "a red cube, overhead view", "side view, back view, overhead view"]
    tok = latent.tokenizer(texts, padding="max_length", max_length=proc.max_tokens, return_tensors="pt")
    with torch.no_grad():
        direct = latent.text_encoder(tok["input_ids"])[0]
    torch.testing.assert_close(cond[0], direct[0])
    torch.testing.assert_close(cond[3], direct[1])
    torch.testing.assert_close(uncond[1], direct[2])  # the front view's negative names the other views
    assert (cond[0] - cond[1]).abs().max() > 1e-4  # back and front differ
    plain = PromptProcessor(latent, "a red cube", cfg=PromptConfig(view_dependent=False))
    assert plain.texts == ["a red cube"] * 4 and torch.equal(plain.cond[0], plain.cond[2])


def test_release_text_encoder_frees_it_and_keeps_cached_prompts(folders):
    prior = load_prior(PriorConfig(model=str(folders[0])), "cpu")
    ref = weakref.ref(prior.text_encoder)
    proc = PromptProcessor(prior, "a green sphere")
    proc.release_text_encoder()
    gc.collect()
    assert prior.text_encoder is None and ref() is None
    again = PromptProcessor(prior, "a green sphere")  # cached: works without the encoder
    assert torch.equal(again.cond, proc.cond)
    with pytest.raises(ModelError, match="released"):
        PromptProcessor(prior, "a blue torus")


@pytest.mark.parametrize("prompt, match", [("", "empty"), ("   \n", "empty"),
                                           ("a red cube " * 3, r"tokens long.*at most 10"),
                                           ("x" * 1001, "characters long.*1000")])
def test_bad_prompts_are_input_errors(pixel, prompt, match):
    with pytest.raises(InputError, match=match):
        PromptProcessor(pixel, prompt)


def test_long_negative_prompt_is_an_input_error(pixel):
    with pytest.raises(InputError, match="negative prompt"):
        PromptProcessor(pixel, "a red cube", "ugly " * 20)


# ---------------------------------------------------------------------------------------------- SDS


def _frozen_untouched(prior) -> None:
    for m in (prior.unet, prior.vae, prior.text_encoder):
        if m is not None:
            assert all(p.grad is None and not p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("which", ["pixel", "latent"])
def test_one_sds_step_changes_the_image_and_not_the_models(which, request):
    prior = request.getfixturevalue(which)
    sds = SDSGuidance(prior, PromptProcessor(prior, "a red cube"), SDSConfig(guidance_scale=20.0))
    assert not isinstance(sds, torch.nn.Module)
    image = torch.nn.Parameter(torch.full((2, 24, 24, 3), 0.5))  # resized to the prior's 16x16 inside
    before = image.detach().clone()
    opt = torch.optim.SGD([image], lr=0.1)
    out = sds(image, torch.tensor([0.0, 180.0]), torch.tensor([15.0, 15.0]), 0, 10, torch.Generator().manual_seed(0))
    out["loss_sds"].backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().max() > 0
    opt.step()
    assert (image.detach() - before).abs().max() > 0
    _frozen_untouched(prior)
    assert out["t"].shape == (2,) and out["views"].tolist() == [0, 2] and float(out["nonfinite"]) == 0.0


def _camera_prior(src, dst, features="azimuth_elevation_fourier", width=10):
    """The tiny pixel prior with a camera input: its UNet rebuilt with a 'projection' class embedding."""
    from diffusers import UNet2DConditionModel

    shutil.copytree(src, dst)
    old = UNet2DConditionModel.from_pretrained(dst / "unet")
    cfg = {k: v for k, v in old.config.items() if not k.startswith("_")}
    torch.manual_seed(3)
    new = UNet2DConditionModel(**{**cfg, "class_embed_type": "projection",
                                  "projection_class_embeddings_input_dim": width})
    new.save_pretrained(dst / "unet", safe_serialization=True)
    if features is not None:
        index = json.loads((dst / "model_index.json").read_text())
        (dst / "model_index.json").write_text(json.dumps({**index, "dreamsmith_camera_features": features}))
    return dst


def test_camera_features_are_periodic_and_tell_nearby_views_apart():
    f = camera_features(torch.tensor([0.0, 360.0, 45.0, 90.0, -30.0]), torch.tensor([0.0, 0.0, 0.0, 0.0, 30.0]))
    assert f.shape == (5, CAMERA_FEATURES["azimuth_elevation_fourier"]) and f.dtype == torch.float32
    torch.testing.assert_close(f[0], f[1])  # a full turn: the same camera
    assert (f[0] - f[2]).abs().max() > 0.5  # 45 degrees apart: different (a cube face on vs an edge on)
    assert (f[0] - f[3]).abs().max() > 0.5  # 90 degrees: different too (front vs side), not only mod 90
    torch.testing.assert_close(f[4, -2:], torch.tensor([0.8660254, 0.5]))  # cos, sin of the elevation
    torch.testing.assert_close(mirrored_azimuth(torch.tensor([30.0, 0.0, 270.0])), torch.tensor([330.0, 0.0, 90.0]))
    with pytest.raises(ValueError, match="unknown camera features"):
        camera_features(torch.zeros(1), torch.zeros(1), "quaternions")


def test_a_prior_with_a_camera_input_gets_the_camera_of_every_view(folders, tmp_path):
    prior = load_prior(PriorConfig(model=str(_camera_prior(folders[0], tmp_path / "cam"))), "cpu")
    assert prior.camera_features == "azimuth_elevation_fourier"
    assert load_prior(PriorConfig(model=str(folders[0])), "cpu").camera_features is None
    seen = []
    hook = prior.unet.class_embedding.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    try:
        sds = SDSGuidance(prior, PromptProcessor(prior, "a red cube"), SDSConfig(guidance_scale=20.0))
        image = torch.nn.Parameter(torch.full((2, 16, 16, 3), 0.5))
        az, el = torch.tensor([10.0, 200.0]), torch.tensor([15.0, 40.0])
        out = sds(image, az, el, 0, 10, torch.Generator().manual_seed(0))
        out["loss_sds"].backward()
    finally:
        hook.remove()
    assert torch.isfinite(image.grad).all() and image.grad.abs().max() > 0
    want = camera_features(az, el)
    torch.testing.assert_close(seen[0], torch.cat([want, want]))  # unconditional and conditional halves alike
    with pytest.raises(ModelError, match="class embedding"):  # the index says camera, the UNet has another width
        load_prior(PriorConfig(model=str(_camera_prior(folders[0], tmp_path / "w", width=6))), "cpu")
    with pytest.raises(ModelError, match="quaternions"):
        load_prior(PriorConfig(model=str(_camera_prior(folders[0], tmp_path / "q", features="quaternions"))), "cpu")
    with pytest.raises(ModelError, match="extra conditioning"):  # a class embedding nobody declared
        load_prior(PriorConfig(model=str(_camera_prior(folders[0], tmp_path / "n", features=None))), "cpu")


@pytest.mark.parametrize("score", ["sds", "csd"])
def test_pixel_sds_gradient_matches_the_formula(pixel, score):
    """d loss / d rgb = 2 * w(t) * (eps_u + s (eps_c - eps_u) - noise) / B, with IF's 6-channel output split;
    with the classifier score (csd) the residual is s (eps_c - eps_u) alone."""
    proc = PromptProcessor(pixel, "a blue torus")
    sds = SDSGuidance(pixel, proc, SDSConfig(guidance_scale=7.0, score=score))
    rgb = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(5)).requires_grad_()
    out = sds(rgb, torch.tensor([90.0, 0.0]), torch.tensor([0.0, 70.0]), 3, 10, torch.Generator().manual_seed(3))
    out["loss_sds"].backward()

    gen = torch.Generator().manual_seed(3)
    t = torch.randint(20, 981, (2,), generator=gen)
    noise = torch.randn(2, 3, 16, 16, generator=gen)
    assert torch.equal(out["t"], t)
    a = pixel.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * (2 * rgb.detach().permute(0, 3, 1, 2) - 1) + (1 - a).sqrt() * noise
    views = torch.tensor([1, 3])
    with torch.no_grad():
        eps_u = pixel.unet(x_t, t, encoder_hidden_states=proc.uncond[views]).sample[:, :3]
        eps_c = pixel.unet(x_t, t, encoder_hidden_states=proc.cond[views]).sample[:, :3]
    residual = 7.0 * (eps_c - eps_u) if score == "csd" else eps_u + 7.0 * (eps_c - eps_u) - noise
    g = (1 - a) * residual
    torch.testing.assert_close(rgb.grad, (2 * g / 2).permute(0, 2, 3, 1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("which", ["pixel", "latent"])
def test_same_seed_gives_bitwise_identical_gradient(which, request):
    prior = request.getfixturevalue(which)
    sds = SDSGuidance(prior, PromptProcessor(prior, "a green sphere"), SDSConfig(vae_grad_checkpointing=True))
    grads = []
    for seed in (7, 7, 8):
        rgb = torch.full((1, 16, 16, 3), 0.3, requires_grad=True)
        sds(rgb, torch.tensor([30.0]), torch.tensor([0.0]), 1, 10, torch.Generator().manual_seed(seed))["loss_sds"] \
            .backward()
        grads.append(rgb.grad)
    assert torch.equal(grads[0], grads[1])
    assert not torch.equal(grads[0], grads[2])


def test_max_step_annealing_limits_the_timesteps(pixel):
    cfg = SDSConfig(anneal="linear", max_step_percent_end=0.3, anneal_fraction=0.5)
    assert max_step_percent(cfg, 0, 100) == pytest.approx(0.98)
    assert max_step_percent(cfg, 25, 100) == pytest.approx(0.64)
    assert max_step_percent(cfg, 90, 100) == pytest.approx(0.3)
    assert max_step_percent(SDSConfig(anneal="sqrt", max_step_percent_end=0.5), 25, 100) == pytest.approx(0.74)
    sds = SDSGuidance(pixel, PromptProcessor(pixel, "a red cube"), cfg)
    rgb = torch.full((16, 16, 16, 3), 0.5)
    out = sds(rgb, torch.zeros(16), torch.zeros(16), 90, 100, torch.Generator().manual_seed(0))
    assert out["t"].min() >= 20 and out["t"].max() <= 300


@pytest.mark.parametrize("mode", ["value", "norm"])
def test_gradient_clipping_bounds_the_gradient(pixel, mode):
    c = 0.01
    sds = SDSGuidance(pixel, PromptProcessor(pixel, "a red cube"), SDSConfig(grad_clip=c, grad_clip_mode=mode))
    rgb = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
    out = sds(rgb, torch.zeros(2), torch.zeros(2), 0, 10, torch.Generator().manual_seed(2))
    out["loss_sds"].backward()
    g = rgb.grad * 2 / 2  # d loss / d rgb = 2 g / B with B = 2
    if mode == "value":
        assert g.abs().max() <= c + 1e-7
    else:
        assert torch.all(g.flatten(1).norm(dim=1) <= c * (1 + 1e-5))
    assert float(out["grad_norm"]) > 0


def test_nonfinite_predictions_give_zero_gradient_and_are_reported(pixel, monkeypatch):
    sds = SDSGuidance(pixel, PromptProcessor(pixel, "a red cube"))
    nan = float("nan")
    monkeypatch.setattr(sds, "predict_noise_pair", lambda x_t, *a: (torch.full_like(x_t, nan),) * 2)
    rgb = torch.full((1, 16, 16, 3), 0.5, requires_grad=True)
    out = sds(rgb, torch.zeros(1), torch.zeros(1), 0, 10, torch.Generator().manual_seed(0))
    out["loss_sds"].backward()
    assert float(out["nonfinite"]) == 1.0 and torch.equal(rgb.grad, torch.zeros_like(rgb))


def test_unknown_score_is_a_config_error(pixel):
    with pytest.raises(ConfigError, match="score"):
        SDSGuidance(pixel, PromptProcessor(pixel, "a red cube"), SDSConfig(score="vsd"))
