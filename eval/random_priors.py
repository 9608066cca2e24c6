"""Random-weight diffusion priors with the structure of the real defaults, for tests and benchmarks.

Two architectures, each at two scales:

- ``if``: a DeepFloyd-IF-stage-I-like pixel prior. 64 px RGB input, 6 output channels (noise and learned
  variance), ``SimpleCrossAttn`` blocks, a T5 encoder whose width differs from the UNet's cross-attention
  width (the ``encoder_hid_dim`` text projection), a DDPM ``learned_range`` scheduler with thresholding,
  ``model_index.json`` naming ``IFPipeline``.
- ``sd``: a Stable-Diffusion-2.1-base-like latent prior. A 4-channel UNet at 64 with linear projections,
  an x8 ``AutoencoderKL`` (scaling factor 0.18215), a CLIP text encoder, the PNDM scheduler config such
  folders ship, ``model_index.json`` naming ``StableDiffusionPipeline``.

``full`` uses the published configs of IF-I-XL-v1.0 and stable-diffusion-2-1-base (speed and memory do not
depend on the weights, so random ones measure the real cost); ``tiny`` keeps every structural choice and
shrinks only the widths and depths, so that the suite can run the real code path in seconds.
Nothing here downloads anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

# The published architectures (unet/config.json, vae/config.json, text_encoder/config.json,
# scheduler/scheduler_config.json of the Hub folders), with the keys diffusers and transformers need.
IF_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 3, "out_channels": 6, "layers_per_block": 3,
    "block_out_channels": [704, 1408, 2112, 2816],
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D",
                         "SimpleCrossAttnDownBlock2D"],
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                       "ResnetUpsampleBlock2D"],
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "cross_attention_dim": 2816, "encoder_hid_dim": 4096,
    "encoder_hid_dim_type": "text_proj", "attention_head_dim": 64, "addition_embed_type": "text",
    "addition_embed_type_num_heads": 64, "act_fn": "gelu", "resnet_time_scale_shift": "scale_shift",
    "resnet_skip_time_act": False, "cross_attention_norm": "group_norm", "norm_num_groups": 32,
}
T5_XXL_ENCODER: dict[str, Any] = {
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "layer_norm_epsilon": 1e-6,
}
IF_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "beta_start": 0.0001, "beta_end": 0.02,
    "variance_type": "learned_range", "prediction_type": "epsilon", "clip_sample": True, "clip_sample_range": 1.0,
    "thresholding": True, "dynamic_thresholding_ratio": 0.95, "sample_max_value": 1.5,
}
SD_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
    "act_fn": "silu", "norm_num_groups": 32,
}
SD_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "norm_num_groups": 32, "sample_size": 512,
    "scaling_factor": 0.18215,
}
CLIP_H_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
    "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 512,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
SD_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
    "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1,
}

# tiny: the same structure, small widths. The T5 width (24) differs from the cross-attention width (32), as in IF.
_TINY: dict[str, dict[str, Any]] = {
    "if_unet": {"layers_per_block": 1, "block_out_channels": [16, 32, 32, 32], "cross_attention_dim": 32,
                "encoder_hid_dim": 24, "attention_head_dim": 8, "addition_embed_type_num_heads": 2,
                "norm_num_groups": 8},
    "t5": {"d_model": 24, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2},
    "sd_unet": {"layers_per_block": 1, "block_out_channels": [16, 32, 32, 32], "cross_attention_dim": 24,
                "attention_head_dim": [2, 4, 4, 4], "norm_num_groups": 8},
    "sd_vae": {"layers_per_block": 1, "block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4},
    "clip": {"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
             "projection_dim": 16},
}
SCALES = ("tiny", "full")
_CHARS = "abcdefghijklmnopqrstuvwxyz,.-'"


def unet_config(kind: str, scale: str) -> dict[str, Any]:
    """The UNet config of ``kind`` (``if`` or ``sd``) at ``scale``."""
    base = IF_UNET if kind == "if" else SD_UNET
    return {**base, **(_TINY[f"{kind}_unet"] if scale == "tiny" else {})}


def text_encoder_config(kind: str, scale: str) -> dict[str, Any]:
    """The text encoder config of ``kind`` at ``scale`` (T5-XXL's encoder for ``if``, OpenCLIP ViT-H's for ``sd``)."""
    if kind == "if":
        cfg = {**T5_XXL_ENCODER, **(_TINY["t5"] if scale == "tiny" else {})}
    else:
        cfg = {**CLIP_H_TEXT, **(_TINY["clip"] if scale == "tiny" else {})}
    if scale == "tiny":
        cfg["vocab_size"] = 3 + 2 * len(_CHARS) + 64
    return cfg


def vae_config(scale: str) -> dict[str, Any]:
    """The x8 AutoencoderKL config at ``scale``."""
    return {**SD_VAE, **(_TINY["sd_vae"] if scale == "tiny" else {})}


def _cast(module, dtype: torch.dtype):
    return module if dtype == torch.float32 else module.to(dtype)


def build_unet(kind: str, scale: str, dtype: torch.dtype = torch.float32):
    """A randomly initialised UNet of ``kind`` at ``scale``."""
    from diffusers import UNet2DConditionModel

    return _cast(UNet2DConditionModel(**unet_config(kind, scale)), dtype)


def build_vae(scale: str, dtype: torch.dtype = torch.float32):
    """A randomly initialised x8 AutoencoderKL at ``scale``."""
    from diffusers import AutoencoderKL

    return _cast(AutoencoderKL(**vae_config(scale)), dtype)


def build_text_encoder(kind: str, scale: str, dtype: torch.dtype = torch.float32):
    """A randomly initialised T5 encoder (``if``) or CLIP text model (``sd``) at ``scale``."""
    if kind == "if":
        from transformers import T5Config, T5EncoderModel

        return _cast(T5EncoderModel(T5Config(**text_encoder_config(kind, scale))), dtype)
    from transformers import CLIPTextConfig, CLIPTextModel

    return _cast(CLIPTextModel(CLIPTextConfig(**text_encoder_config(kind, scale))), dtype)


def build_tokenizer(kind: str):
    """A small real tokenizer of the class the folder names: T5 (unigram over words) or CLIP (BPE over characters).

    Enough to tokenize English prompts; the real vocabularies are not needed to exercise the code path.
    """
    if kind == "if":
        from transformers import T5Tokenizer

        pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
        pieces += [(c, -3.0) for c in _CHARS] + [("\u2581" + c, -3.0) for c in _CHARS]
        return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=77)
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _save_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def write_prior(kind: str, path: str | Path, scale: str = "tiny", seed: int = 0) -> Path:
    """Write a diffusers folder of ``kind`` (``if`` or ``sd``) at ``scale`` with random weights (safetensors) to
    ``path``; returns ``path``."""
    import diffusers

    if kind not in ("if", "sd") or scale not in SCALES:
        raise ValueError(f"kind must be 'if' or 'sd' and scale one of {SCALES}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    build_unet(kind, scale).save_pretrained(path / "unet", safe_serialization=True)
    build_text_encoder(kind, scale).save_pretrained(path / "text_encoder", safe_serialization=True)
    build_tokenizer(kind).save_pretrained(path / "tokenizer")
    version = diffusers.__version__
    if kind == "if":
        _save_json(path / "scheduler" / "scheduler_config.json",
                   {"_class_name": "DDPMScheduler", "_diffusers_version": version, **IF_SCHEDULER})
        index = {"_class_name": "IFPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                 "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
                 "scheduler": ["diffusers", "DDPMScheduler"], "requires_safety_checker": True,
                 "safety_checker": ["deepfloyd_if.safety_checker", "IFSafetyChecker"],
                 "feature_extractor": ["transformers", "CLIPImageProcessor"],
                 "watermarker": ["deepfloyd_if.watermark", "IFWatermarker"]}
    else:
        build_vae(scale).save_pretrained(path / "vae", safe_serialization=True)
        _save_json(path / "scheduler" / "scheduler_config.json",
                   {"_class_name": "PNDMScheduler", "_diffusers_version": version, **SD_SCHEDULER})
        index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                 "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
                 "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
                 "requires_safety_checker": False, "safety_checker": [None, None],
                 "feature_extractor": ["transformers", "CLIPImageProcessor"]}
    _save_json(path / "model_index.json", {**index, "_diffusers_version": version})
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("if", "sd"))
    p.add_argument("out", help="folder to write")
    p.add_argument("--scale", choices=SCALES, default="tiny")
    args = p.parse_args()
    print(write_prior(args.kind, args.out, args.scale))


if __name__ == "__main__":
    main()
