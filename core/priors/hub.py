"""Which prior to load (:class:`PriorConfig`), and finding it on disk: a local diffusers folder, or a Hugging Face
Hub id resolved through the local cache and downloaded only when the user allows it (only the files score
distillation needs, safetensors weights only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...protocol import DEMO_MODEL, model_variant
from ..runtime.errors import ModelError

#: The demo prior shipped inside the extension (``model: demo``).
DEMO_PATH = Path(__file__).resolve().parents[2] / "assets" / "demo_prior"
#: The folder parts whose files a download fetches (the VAE only when the model has one).
NEEDED_PARTS = ("unet", "text_encoder", "tokenizer", "scheduler", "vae")


@dataclass
class PriorConfig:
    """Which diffusion prior to load, and how.

    Attributes:
        model: A Hugging Face Hub id (e.g. ``"DeepFloyd/IF-I-XL-v1.0"``) or a local diffusers folder.
        allow_network: Download a Hub model that is not in the local cache (only when the user allows online access).
        dtype: ``"auto"`` (fp16 on CUDA, fp32 otherwise), ``"fp16"``, ``"bf16"`` or ``"fp32"``.
        revision: Hub revision (branch, tag or commit); ``None`` for the default branch.
        cache_dir: Hugging Face cache folder; ``None`` for the standard one (``HF_HOME``).
        variant: Weight file variant such as ``"fp16"`` (``*.fp16.safetensors``); ``""`` for the plain files;
            ``None``: the model list's for this model (:attr:`weights_variant`: fp16 for IF-I-XL, which is what the
            model manager downloads), else the plain files.
    """

    model: str = ""
    allow_network: bool = False
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    revision: str | None = None
    cache_dir: str | None = None
    variant: str | None = None

    @property
    def weights_variant(self) -> str | None:
        """The variant to download and load: :attr:`variant`, else the model list's (None: the plain files)."""
        return (self.variant or None) if self.variant is not None else model_variant(self.model)


def _download_hint(model: str) -> str:
    return (f"download it with `huggingface-cli download {model}` (or `hf download {model}`), allow online access "
            f"(Blender: Preferences > System > Network, and the Dreamsmith preference), or give the path of a local "
            f"diffusers folder instead")


def _hub_patterns(index: dict[str, Any], variant: str | None) -> list[str]:
    """File patterns to fetch from the Hub: configs, tokenizer files and the safetensors weights of needed parts."""
    pats = ["model_index.json"]
    for name in NEEDED_PARTS:
        if not isinstance(index.get(name), list) or index[name][0] is None:
            continue
        pats += [f"{name}/*.json", f"{name}/*.txt", f"{name}/*.model"]
        if variant:
            pats += [f"{name}/*.{variant}.safetensors", f"{name}/*.{variant}-*-of-*.safetensors"]
        else:
            pats += [f"{name}/diffusion_pytorch_model.safetensors", f"{name}/model.safetensors",
                     f"{name}/diffusion_pytorch_model-*-of-*.safetensors", f"{name}/model-*-of-*.safetensors"]
    return pats


def resolve_model_path(cfg: PriorConfig) -> Path:
    """The local folder of ``cfg.model``: the folder itself, or the Hub cache snapshot (downloading only if allowed).

    Raises:
        ModelError: The model is neither a folder nor in the cache (and downloading is not allowed or failed).
    """
    model = (cfg.model or "").strip()
    if not model:
        raise ModelError("No diffusion model was given; set it to a Hugging Face id or a local diffusers folder.")
    if model == DEMO_MODEL:
        if not (DEMO_PATH / "model_index.json").is_file():
            raise ModelError(f"The demo model is missing from this installation ({DEMO_PATH}); reinstall the "
                             "extension or choose another model.")
        return DEMO_PATH
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    looks_like_path = model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or ":" in model or "\\" in model
    if looks_like_path:
        if path.is_file():
            raise ModelError(f"{model!r} is a single file; Dreamsmith needs a diffusers folder (with model_index.json)."
                             f" Convert the checkpoint with diffusers' conversion script.")
        raise ModelError(f"The model folder {model!r} does not exist; check the path or give a Hugging Face id.")

    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        return Path(snapshot_download(model, revision=cfg.revision, cache_dir=cfg.cache_dir, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types (not cached, offline, invalid id)
        if not cfg.allow_network:
            raise ModelError(f"The model {model!r} was not found locally; {_download_hint(model)}.") from exc
    try:
        index_file = hf_hub_download(model, "model_index.json", revision=cfg.revision, cache_dir=cfg.cache_dir)
        index = json.loads(Path(index_file).read_text())
        folder = snapshot_download(model, revision=cfg.revision, cache_dir=cfg.cache_dir,
                                   allow_patterns=_hub_patterns(index, cfg.weights_variant))
    except Exception as exc:
        raise ModelError(f"Downloading {model!r} failed ({type(exc).__name__}: {exc}); check the id, your network "
                         f"and, for gated models (DeepFloyd IF), that you accepted the licence and logged in with "
                         f"`huggingface-cli login`.") from exc
    return Path(folder)
