"""The committed toy prior (assets/demo_prior): a real diffusers folder whose prompt steers what it draws.

Trained by scripts/train_toy_prior.py; judged in full by scripts/check_toy_prior.py. These tests are the fast guard:
the folder loads component by component from safetensors only, it is small, the tokenizer reads the prompt grammar,
and the prompt changes the colour of a short DDIM sample through the real diffusers code path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamsmith.core.guidance.camera import unet_camera_inputs
from dreamsmith.eval.toy_prior_data import COLOURS as ALBEDO
from dreamsmith.eval.toy_prior_data import render_shape

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "assets" / "demo_prior"

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("cube", "sphere", "cone", "torus")
PROMPTS = [f"a {c} {s}" for c in COLOURS for s in SHAPES]
AZIMUTH, ELEVATION = 30.0, 20.0  # the camera every test here gives a UNet that takes one


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread for this module: on a shared 2-core machine, 2 threads oversubscribe and run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cam(unet, n: int) -> dict:
    """The camera input (``AZIMUTH``, ``ELEVATION`` for all ``n`` images) of a UNet that takes one, else nothing."""
    return unet_camera_inputs(unet, torch.full((n,), AZIMUTH), torch.full((n,), ELEVATION))


@pytest.fixture(scope="module")
def prior():
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, PreTrainedTokenizerFast

    unet = UNet2DConditionModel.from_pretrained(FOLDER / "unet", use_safetensors=True).eval()
    te = CLIPTextModel.from_pretrained(FOLDER / "text_encoder", use_safetensors=True).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(FOLDER / "tokenizer")
    sched = DDPMScheduler.from_pretrained(FOLDER / "scheduler")
    return unet, te, tok, sched


def test_folder_is_small_standard_and_pickle_free():
    index = json.loads((FOLDER / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    assert index["scheduler"] == ["diffusers", "DDPMScheduler"]
    files = [p for p in FOLDER.rglob("*") if p.is_file()]
    pickles = [p.name for p in files if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}]
    assert not pickles, f"pickle weights in the toy prior: {pickles}"
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert {p.parent.name for p in weights} == {"unet", "text_encoder"}
    total = sum(p.stat().st_size for p in files)
    assert total < 20 * 2**20, f"toy prior is {total / 2**20:.1f} MB (limit 20 MB)"
    assert (FOLDER / "README.md").is_file()
    sched = json.loads((FOLDER / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["num_train_timesteps"], sched["beta_schedule"], sched["prediction_type"]) == (
        1000, "squaredcos_cap_v2", "epsilon")


def test_tokenizer_reads_the_prompt_grammar(prior):
    _, te, tok, _ = prior
    assert tok.model_max_length == te.config.max_position_embeddings
    ids = tok(PROMPTS, padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    assert ids.shape == (16, tok.model_max_length)
    assert len({tuple(r) for r in ids.tolist()}) == 16, "two prompts map to the same token ids"
    assert (ids != tok.unk_token_id).all()
    assert tok("A RED Cube").input_ids == tok("a red cube").input_ids  # lower-cased
    viewed = tok("a red cube, side view").input_ids
    assert tok.unk_token_id not in viewed and len(viewed) <= tok.model_max_length
    unknown = tok("a purple cube").input_ids
    assert unknown[1] == tok.unk_token_id and unknown[0] == ids[0, 0].item() and unknown[2] == ids[0, 2].item()


def test_unet_is_called_like_real_models(prior):
    unet, te, tok, _ = prior
    ids = tok(["a red cube", ""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    s = unet.config.sample_size
    x = torch.randn(2, 3, s, s)
    with torch.no_grad():
        emb = te(ids).last_hidden_state
        out = unet(x, torch.tensor([500, 20]), encoder_hidden_states=emb, **_cam(unet, 2)).sample
    assert out.shape == x.shape and torch.isfinite(out).all()


@torch.no_grad()
def _object_colours(prior, text: str, n: int = 8, steps: int = 20, guidance: float = 4.0) -> torch.Tensor:
    """Mean RGB ``[n, 3]`` of the non-white pixels of each of ``n`` seeded DDIM samples of ``text``.

    Stochastic DDIM (``eta = 1``): the toy prior's deterministic samples keep noise and colour casts.
    """
    from diffusers import DDIMScheduler

    unet, te, tok, sched = prior
    ids = tok([text, ""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    emb = te(ids).last_hidden_state  # [2, L, D]
    emb = torch.cat([emb[:1].expand(n, -1, -1), emb[1:].expand(n, -1, -1)])
    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(steps)
    s = unet.config.sample_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, s, s, generator=gen)
    for t in ddim.timesteps:
        e_c, e_u = unet(torch.cat([x, x]), t, encoder_hidden_states=emb, **_cam(unet, 2 * n)).sample.chunk(2)
        x = ddim.step(e_u + guidance * (e_c - e_u), t, x, eta=1.0, generator=gen).prev_sample
    img = ((x + 1) / 2).clamp(0, 1)  # [n, 3, S, S]
    fg = ((1 - img).amax(dim=1) > 0.35).float()  # [n, S, S] non-white pixels
    assert (fg.mean(dim=(1, 2)) > 0.05).all(), f"{text!r}: a sample is almost all background"
    return (img * fg[:, None]).sum(dim=(2, 3)) / fg.sum(dim=(1, 2))[:, None]


def test_prompt_steers_sampled_colour(prior):
    red, blue = _object_colours(prior, "a red cube"), _object_colours(prior, "a blue cube")  # [8, 3] each
    red_ok = red[:, 0] > 1.3 * red[:, 1:].amax(dim=1)
    blue_ok = blue[:, 2] > 1.3 * blue[:, :2].amax(dim=1)
    assert red_ok.sum() >= 4, f"'a red cube' drew mean colours {red.tolist()}"
    assert blue_ok.sum() >= 4, f"'a blue cube' drew mean colours {blue.tolist()}"
    share = lambda c, k: (c[:, k] / c.sum(dim=1)).mean()  # noqa: E731
    assert share(red, 0) > share(blue, 0) + 0.15 and share(blue, 2) > share(red, 2) + 0.15


@torch.no_grad()
def test_conditional_score_prefers_the_right_colour(prior):
    """What score distillation uses: at one noise level, the right prompt explains a noised image best."""
    unet, te, tok, sched = prior
    ids = tok(["a red sphere", "a blue sphere"], padding="max_length", max_length=tok.model_max_length,
              return_tensors="pt").input_ids
    emb = te(ids).last_hidden_state  # [2, L, D]
    s = unet.config.sample_size
    # A red and a blue sphere as the training renderer draws them from the camera _cam gives the UNet (a hand-drawn
    # shaded disc is not what a camera-conditioned prior saw from that camera).
    az, el = torch.tensor([AZIMUTH]), torch.tensor([ELEVATION])
    x0 = torch.cat([render_shape("sphere", ALBEDO[c], az, el, s) for c in ("red", "blue")]) * 2 - 1  # [2, 3, S, S]
    gen = torch.Generator().manual_seed(0)
    for t in (300, 600, 850):
        ab = sched.alphas_cumprod[t]
        noise = torch.randn(x0.shape, generator=gen)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        tt = torch.full((2,), t)
        err = torch.stack([((unet(xt, tt, encoder_hidden_states=emb[k].expand(2, -1, -1), **_cam(unet, 2))
                             .sample - noise) ** 2)
                           .mean(dim=(1, 2, 3)) for k in range(2)], dim=1)  # [image, prompt]
        assert err[0, 0] < err[0, 1] and err[1, 1] < err[1, 0], f"t={t}: epsilon errors {err.tolist()}"
