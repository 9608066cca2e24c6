"""Loading diffusion priors: tiny random diffusers folders go through load_prior exactly like real models.

The builders here are also used by test_sds.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamsmith.core.guidance.camera import unet_camera_inputs
from dreamsmith.core.priors.models import PriorConfig, load_prior
from dreamsmith.core.runtime.errors import ModelError

REPO = Path(__file__).resolve().parents[2]
TOY_PRIOR = REPO / "assets" / "demo_prior"
WORDS = ["a", "red", "blue", "green", "cube", "torus", "sphere", ",", "front", "side", "back", "overhead", "view",
         "blurry", "ugly"]
MAX_TOKENS = 10
DIM = 16


# ---------------------------------------------------------------------------------------------- tiny models


def _tokenizer():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *WORDS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   model_max_length=MAX_TOKENS)


def _unet(in_ch: int, out_ch: int, size: int, text: bool):
    from diffusers import UNet2DConditionModel

    extra = {"addition_embed_type": "text", "addition_embed_type_num_heads": 2} if text else {}
    return UNet2DConditionModel(sample_size=size, in_channels=in_ch, out_channels=out_ch, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=DIM,
                                attention_head_dim=4, norm_num_groups=4, **extra)


def _index(path: Path, parts: dict[str, list]) -> None:
    import diffusers

    (path / "model_index.json").write_text(json.dumps({"_class_name": "TinyPipeline",
                                                       "_diffusers_version": diffusers.__version__, **parts}))


def build_pixel_prior(path: Path) -> Path:
    """A DeepFloyd-IF-like pixel prior: 16x16 RGB UNet predicting noise + variance (6 channels), T5 encoder."""
    from diffusers import DDPMScheduler
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    _unet(3, 6, 16, text=True).save_pretrained(path / "unet", safe_serialization=True)
    cfg = T5Config(vocab_size=len(WORDS) + 2, d_model=DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                   pad_token_id=0, decoder_start_token_id=0)
    T5EncoderModel(cfg).save_pretrained(path / "text_encoder", safe_serialization=True)
    _tokenizer().save_pretrained(path / "tokenizer")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                  variance_type="learned_range").save_pretrained(path / "scheduler")
    _index(path, {"unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "T5EncoderModel"],
                  "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "DDPMScheduler"],
                  "safety_checker": [None, None], "watermarker": ["deepfloyd_if", "IFWatermarker"],
                  "feature_extractor": ["transformers", "CLIPImageProcessor"]})
    return path


def build_latent_prior(path: Path) -> Path:
    """A Stable-Diffusion-like latent prior: 8x8x4 latent UNet, AutoencoderKL (x2), CLIP text encoder, PNDM config."""
    from diffusers import AutoencoderKL, PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(1)
    path.mkdir(parents=True, exist_ok=True)
    _unet(4, 4, 8, text=False).save_pretrained(path / "unet", safe_serialization=True)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                  norm_num_groups=4, layers_per_block=1, sample_size=16).save_pretrained(path / "vae",
                                                                                         safe_serialization=True)
    cfg = CLIPTextConfig(vocab_size=len(WORDS) + 2, hidden_size=DIM, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=MAX_TOKENS, pad_token_id=0)
    CLIPTextModel(cfg).save_pretrained(path / "text_encoder", safe_serialization=True)
    _tokenizer().save_pretrained(path / "tokenizer")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  skip_prk_steps=True).save_pretrained(path / "scheduler")
    _index(path, {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                  "text_encoder": ["transformers", "CLIPTextModel"],
                  "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "PNDMScheduler"],
                  "safety_checker": [None, None]})
    return path


@pytest.fixture(scope="module")
def tiny_priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    return build_pixel_prior(root / "pixel"), build_latent_prior(root / "latent")


def _modules(prior):
    return [m for m in (prior.unet, prior.vae, prior.text_encoder) if m is not None]


# ---------------------------------------------------------------------------------------------- loading


def test_pixel_prior_loads_frozen_and_skips_extras(tiny_priors):
    from diffusers import DDPMScheduler

    prior = load_prior(PriorConfig(model=str(tiny_priors[0])), "cpu")
    assert prior.kind == "pixel" and prior.vae is None
    assert prior.sample_size == 16 and prior.image_size == 16
    assert type(prior.scheduler) is DDPMScheduler and prior.scheduler.config.num_train_timesteps == 1000
    assert prior.dtype == torch.float32 and prior.max_text_tokens == 10
    for m in _modules(prior):
        assert not m.training
        assert not any(p.requires_grad for p in m.parameters())
    prior.release_text_encoder()
    assert prior.text_encoder is None


def test_latent_prior_loads_and_scheduler_becomes_ddpm(tiny_priors):
    from diffusers import DDPMScheduler

    prior = load_prior(PriorConfig(model=str(tiny_priors[1])), torch.device("cpu"))
    assert prior.kind == "latent" and prior.vae is not None
    assert prior.sample_size == 8 and prior.image_size == 16  # 8 latent cells x VAE factor 2
    assert type(prior.scheduler) is DDPMScheduler
    # The model's own noise schedule is kept (SD's scaled_linear betas), not DDPM's default.
    assert prior.scheduler.config.beta_schedule == "scaled_linear"
    assert abs(float(prior.scheduler.betas[0]) - 0.00085) < 1e-6
    for m in _modules(prior):
        assert not any(p.requires_grad for p in m.parameters()) and not m.training


def test_unknown_hub_id_offline_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = PriorConfig(model="dreamsmith-tests/no-such-model-3f9a", cache_dir=str(tmp_path / "hf"))
    with pytest.raises(ModelError, match="not found locally.*download"):
        load_prior(cfg, "cpu")


def test_missing_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_prior(PriorConfig(model=str(tmp_path / "nowhere")), "cpu")


def test_folder_without_model_index_is_a_model_error(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="model_index.json.*convert"):
        load_prior(PriorConfig(model=str(tmp_path)), "cpu")


def test_pickle_only_weights_are_refused(tiny_priors, tmp_path):
    import shutil

    from diffusers import UNet2DConditionModel

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_priors[0], folder)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert list((folder / "unet").glob("*.bin")) and not list((folder / "unet").glob("*.safetensors"))
    with pytest.raises(ModelError, match=r"pickle weights.*diffusion_pytorch_model\.bin.*safetensors"):
        load_prior(PriorConfig(model=str(folder)), "cpu")


def test_class_not_on_whitelist_is_refused(tiny_priors, tmp_path):
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(tiny_priors[0], folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"] = ["my_package", "EvilEncoder"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="my_package.EvilEncoder.*does not load"):
        load_prior(PriorConfig(model=str(folder)), "cpu")


def test_folder_without_unet_is_refused(tiny_priors, tmp_path):
    import shutil

    folder = tmp_path / "nounet"
    shutil.copytree(tiny_priors[1], folder)
    index = json.loads((folder / "model_index.json").read_text())
    del index["unet"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="no 'unet'"):
        load_prior(PriorConfig(model=str(folder)), "cpu")


@pytest.mark.skipif(not (TOY_PRIOR / "model_index.json").is_file(), reason="the toy prior is not built yet")
def test_toy_prior_loads_as_pixel_prior():
    prior = load_prior(PriorConfig(model=str(TOY_PRIOR)), "cpu")
    assert prior.kind == "pixel" and prior.vae is None
    assert prior.image_size == prior.sample_size >= 16
    x = torch.zeros(1, 3, prior.sample_size, prior.sample_size)
    ids = prior.tokenizer(["a red cube"], padding="max_length", max_length=prior.max_text_tokens,
                          truncation=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        emb = prior.text_encoder(ids)[0]
        cam = unet_camera_inputs(prior.unet, torch.tensor([30.0]), torch.tensor([20.0]))
        out = prior.unet(x, torch.tensor([500]), encoder_hidden_states=emb, **cam).sample
    assert out.shape[1] >= 3 and out.shape[-2:] == x.shape[-2:]
