"""Loading diffusion priors (diffusers folders or Hub ids), offline-first, safetensors only.

A prior is loaded component by component from the folder's ``model_index.json``: only the parts
score distillation needs (UNet, text encoder, tokenizer, scheduler and, for latent models, the
VAE). Each class named there must be on a whitelist; model weights must be safetensors; remote
code is never run. A Hub id is resolved through the local Hugging Face cache and downloaded only
when :attr:`PriorConfig.allow_network` is set. Every module is frozen (no gradients, eval mode)
and lives in a plain :class:`Prior` record, never inside a trainable ``nn.Module``.

Heavy libraries (diffusers, transformers, huggingface_hub) are imported on first use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..runtime.errors import ModelError
from .hub import PriorConfig, resolve_model_path  # noqa: F401  (PriorConfig: part of this module's API)

log = logging.getLogger(__name__)

#: Allowed ``(library, class)`` pairs per component. Everything else in model_index.json is ignored.
TOKENIZER_CLASSES = ("CLIPTokenizer", "CLIPTokenizerFast", "T5Tokenizer", "T5TokenizerFast", "PreTrainedTokenizerFast")
SCHEDULER_CLASSES = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "LMSDiscreteScheduler",
                     "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
                     "UniPCMultistepScheduler", "HeunDiscreteScheduler", "DEISMultistepScheduler")
ALLOWED: dict[str, set[tuple[str, str]]] = {
    "unet": {("diffusers", "UNet2DConditionModel")},
    "vae": {("diffusers", "AutoencoderKL")},
    "text_encoder": {("transformers", "CLIPTextModel"), ("transformers", "T5EncoderModel")},
    "tokenizer": {("transformers", name) for name in TOKENIZER_CLASSES},
    "scheduler": {("diffusers", name) for name in SCHEDULER_CLASSES},
}
REQUIRED = ("unet", "text_encoder", "tokenizer", "scheduler")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(eq=False)
class Prior:
    """A loaded, frozen diffusion prior. A plain record: its models are never submodules of anything trainable.

    Attributes:
        kind: ``"pixel"`` (the UNet denoises images, like DeepFloyd IF stage I) or ``"latent"`` (the UNet denoises
            VAE latents, like Stable Diffusion).
        model_id: The id or folder the user gave.
        path: The resolved local folder (a Hub cache snapshot or the user's folder).
        tokenizer: The transformers tokenizer.
        text_encoder: The transformers text encoder; ``None`` once released.
        unet: The diffusers ``UNet2DConditionModel``.
        scheduler: A ``DDPMScheduler`` built from the model's scheduler config (only its noise schedule is used).
        vae: The ``AutoencoderKL`` of a latent prior, else ``None``.
        sample_size: Spatial size of the UNet's input (pixels for ``pixel``, latent cells for ``latent``).
        image_size: Size of the RGB image the guidance feeds in (``sample_size`` times the VAE's downscale factor).
        device: Where the models live.
        dtype: Weight dtype.
        fingerprint: Identifies the text encoder and tokenizer files (key of the text-embedding caches).
        max_text_tokens: Tokens (special tokens included) the text encoder reads; prompts are padded to it.
        camera_features: For a prior that takes the camera as an input (``model_index.json``'s
            ``dreamsmith_camera_features``, see :mod:`.guidance.camera`), which features; else ``None``.
    """

    kind: Literal["pixel", "latent"]
    model_id: str
    path: Path
    tokenizer: Any
    text_encoder: Any
    unet: Any
    scheduler: Any
    vae: Any
    sample_size: int
    image_size: int
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    max_text_tokens: int = 77
    camera_features: str | None = None

    def release_text_encoder(self) -> None:
        """Delete the text encoder and return its memory (embeddings must have been computed before)."""
        if self.text_encoder is None:
            return
        self.text_encoder = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- reading


def read_model_index(path: Path) -> dict[str, Any]:
    """The parsed ``model_index.json`` of a diffusers folder; a folder that is not one is a :class:`ModelError`."""
    index_file = path / "model_index.json"
    if not index_file.is_file():
        found = sorted(p.name for p in path.iterdir())[:8] if path.is_dir() else []
        hint = ""
        if any(name.endswith((*PICKLE_SUFFIXES, ".safetensors")) for name in found):
            hint = (" It holds a single checkpoint file: convert it to a diffusers folder with diffusers' "
                    "conversion script (and save with safetensors).")
        raise ModelError(f"{str(path)!r} is not a diffusers model folder: it has no model_index.json "
                         f"(found: {', '.join(found) or 'nothing'}).{hint}")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{str(index_file)!r} is not valid JSON ({exc}); re-download the model.") from exc
    if not isinstance(index, dict):
        raise ModelError(f"{str(index_file)!r} is not a diffusers model index; re-download the model.")
    return index


def _check_weights(folder: Path, name: str, variant: str | None) -> None:
    """Refuse a component whose weights are missing or not safetensors."""
    files = [p.name for p in folder.iterdir() if p.is_file()]
    st = [f for f in files if f.endswith(".safetensors")]
    if variant:
        st = [f for f in st if f".{variant}." in f or f".{variant}-" in f]
    if st:
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelError(f"The {name} of this model only has pickle weights ({', '.join(sorted(pickles))}); Dreamsmith "
                         f"loads safetensors only. Convert them to safetensors (load the folder with diffusers and "
                         f"save_pretrained(..., safe_serialization=True)) or use a model that ships .safetensors.")
    what = f"{variant} safetensors weights" if variant else "safetensors weights"
    raise ModelError(f"The {name} folder {str(folder)!r} has no {what}; re-download the model.")


def _component(index: dict[str, Any], path: Path, name: str, required: bool) -> tuple[str, str] | None:
    """``(library, class)`` of a needed component, checked against the whitelist and the folder layout."""
    entry = index.get(name)
    if not isinstance(entry, list) or len(entry) != 2 or entry[0] is None or entry[1] is None:
        if required:
            raise ModelError(f"{str(path)!r} is not a text-to-image diffusers model Dreamsmith can use: its "
                             f"model_index.json has no {name!r}. Use a Stable Diffusion 1.x/2.x or DeepFloyd IF "
                             f"stage I model.")
        return None
    lib, cls = str(entry[0]), str(entry[1])
    if (lib, cls) not in ALLOWED[name]:
        allowed = ", ".join(sorted(f"{a}.{b}" for a, b in ALLOWED[name]))
        raise ModelError(f"The {name} of {str(path)!r} is {lib}.{cls}, which Dreamsmith does not load (allowed: "
                         f"{allowed}). Use a Stable Diffusion 1.x/2.x or DeepFloyd IF stage I model.")
    if not (path / name).is_dir():
        raise ModelError(f"The model folder {str(path)!r} has no {name}/ subfolder; re-download the model.")
    return lib, cls


def _fingerprint(path: Path) -> str:
    """A short hash identifying the text encoder and tokenizer files (names, sizes, modification times)."""
    h = hashlib.sha256(str(path).encode())
    for sub in ("text_encoder", "tokenizer"):
        for p in sorted((path / sub).glob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{sub}/{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:32]


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ModelError(f"Unknown model dtype {name!r}; use auto, fp16, bf16 or fp32.")
    return DTYPES[name]


def _freeze(module: Any) -> Any:
    module.requires_grad_(False)
    module.eval()
    return module


# ---------------------------------------------------------------------------------------------- loading


def _load_model(lib: str, cls: str, path: Path, name: str, dtype: torch.dtype, variant: str | None) -> Any:
    """Load a diffusers or transformers model from ``path/name`` with safetensors only, from local files only."""
    _check_weights(path / name, name, variant)
    kwargs: dict[str, Any] = {"subfolder": name, "use_safetensors": True, "local_files_only": True}
    if variant:
        kwargs["variant"] = variant
    if lib == "diffusers":
        import diffusers

        klass = getattr(diffusers, cls)
        kwargs["torch_dtype"] = dtype
        if importlib.util.find_spec("accelerate") is None:
            kwargs["low_cpu_mem_usage"] = False  # the default would only warn and fall back
    else:
        import transformers

        klass = getattr(transformers, cls)
        kwargs["trust_remote_code"] = False
        kwargs["dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"] = dtype
    try:
        return klass.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"Could not load the {name} of {str(path)!r} ({type(exc).__name__}: {exc}); the files may "
                         f"be incomplete: re-download the model.") from exc


def _load_tokenizer(cls: str, path: Path) -> Any:
    import transformers

    try:
        return getattr(transformers, cls).from_pretrained(str(path), subfolder="tokenizer", local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"Could not load the tokenizer of {str(path)!r} ({type(exc).__name__}: {exc}); "
                         f"re-download the model.") from exc


def _load_scheduler(path: Path) -> Any:
    """A ``DDPMScheduler`` with the model's training noise schedule (whatever sampler the folder names)."""
    import inspect

    from diffusers import DDPMScheduler

    cfg_file = path / "scheduler" / "scheduler_config.json"
    try:
        raw = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"Could not read {str(cfg_file)!r} ({exc}); re-download the model.") from exc
    accepted = set(inspect.signature(DDPMScheduler.__init__).parameters) - {"self"}
    return DDPMScheduler.from_config({k: v for k, v in raw.items() if k in accepted})


def _max_text_tokens(tokenizer: Any, text_encoder: Any) -> int:
    """Prompt length in tokens: the tokenizer's limit (else the encoder's positions, else 77); T5 at most 77 (IF)."""
    n = getattr(tokenizer, "model_max_length", None)
    if not (isinstance(n, int) and 0 < n < 100_000):
        n = getattr(text_encoder.config, "max_position_embeddings", None)
        n = n if isinstance(n, int) and n > 0 else 77
    if getattr(text_encoder.config, "model_type", "") == "t5":
        n = min(n, 77)  # DeepFloyd IF was trained on 77-token T5 embeddings
    return n


def _int_size(value: Any) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _check_camera_input(model: str, camera: Any, ucfg: Any) -> None:
    """A declared camera input must be one Dreamsmith computes and fit the UNet's class embedding."""
    from ..guidance.camera import CAMERA_FEATURES

    if camera not in CAMERA_FEATURES:
        raise ModelError(f"model_index.json of {model!r} asks for camera features {camera!r}; this Dreamsmith "
                         f"computes {', '.join(CAMERA_FEATURES)}. Update Dreamsmith or use another model.")
    want = CAMERA_FEATURES[camera]
    if getattr(ucfg, "class_embed_type", None) != "projection" or \
            getattr(ucfg, "projection_class_embeddings_input_dim", None) != want:
        raise ModelError(f"model_index.json of {model!r} asks for camera features {camera!r} ({want} numbers), but "
                         f"its UNet has no 'projection' class embedding of that width; the folder is inconsistent.")


def _check_text_width(model: str, text_cfg: Any, ucfg: Any) -> None:
    """The text encoder's output width must be what the UNet reads: its ``encoder_hid_dim`` when it projects the
    text first (DeepFloyd IF), else its ``cross_attention_dim``."""
    width = getattr(text_cfg, "d_model", None) or getattr(text_cfg, "hidden_size", None)
    wants = getattr(ucfg, "encoder_hid_dim", None) or ucfg.cross_attention_dim
    if isinstance(wants, (list, tuple)):
        wants = wants[0]
    if width is not None and width != wants:
        raise ModelError(f"The text encoder of {model!r} makes {width}-wide embeddings but its UNet reads {wants}; "
                         f"the folder mixes parts of different models. Re-download it or use another model.")


#: Priors kept loaded between jobs (a batch worker): ``None`` unless inside :func:`keep_priors`.
_KEPT: dict[tuple, Prior] | None = None


@contextlib.contextmanager
def keep_priors():
    """Inside, :func:`load_prior` loads each prior once and hands out copies that share its modules: a batch worker
    process runs job after job without reading the weights again. Releasing a copy's text encoder leaves the kept
    one loaded (it costs its memory for the worker's life). Leaving the block drops the kept priors."""
    global _KEPT
    outer, _KEPT = _KEPT, ({} if _KEPT is None else _KEPT)
    try:
        yield
    finally:
        if outer is None:
            _KEPT = None
            gc.collect()


def load_prior(cfg: PriorConfig, device: torch.device | str) -> Prior:
    """Load the diffusion prior named by ``cfg`` onto ``device``, frozen (or a kept one, see :func:`keep_priors`).

    Args:
        cfg: Which model and how (offline unless ``allow_network``).
        device: Torch device for every component.

    Returns:
        The :class:`Prior`, ``kind`` ``"latent"`` when the folder has a VAE, else ``"pixel"``.

    Raises:
        ModelError: Missing model, not a diffusers folder, non-safetensors weights, a class not on the whitelist,
            or a UNet that needs inputs Dreamsmith does not provide.
    """
    device = torch.device(device)
    dtype = _dtype(cfg.dtype, device)
    path = resolve_model_path(cfg)
    if _KEPT is None:
        return _load_prior(cfg, path, device, dtype)
    key = (str(path), str(device), str(dtype), cfg.weights_variant)
    if key not in _KEPT:
        _KEPT[key] = _load_prior(cfg, path, device, dtype)
    return dataclasses.replace(_KEPT[key], model_id=cfg.model)


def _load_prior(cfg: PriorConfig, path: Path, device: torch.device, dtype: torch.dtype) -> Prior:
    index = read_model_index(path)
    parts = {name: _component(index, path, name, name in REQUIRED) for name in (*REQUIRED, "vae")}
    unet_part, text_part, tokenizer_part = parts["unet"], parts["text_encoder"], parts["tokenizer"]
    assert unet_part and text_part and tokenizer_part, "required components: _component raised without them"
    skipped = sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and k not in parts)
    if skipped:
        log.info("Not loading %s of %s (not needed for guidance).", ", ".join(skipped), cfg.model)

    unet = _load_model(*unet_part, path, "unet", dtype, cfg.weights_variant)
    ucfg = unet.config
    camera = index.get("dreamsmith_camera_features")
    if camera is not None:
        _check_camera_input(cfg.model, camera, ucfg)
    if getattr(ucfg, "addition_embed_type", None) not in (None, "text") or (
            getattr(ucfg, "class_embed_type", None) and camera is None):
        raise ModelError(f"The UNet of {cfg.model!r} needs extra conditioning inputs (SDXL-style or class labels); "
                         f"Dreamsmith supports Stable Diffusion 1.x/2.x and DeepFloyd IF stage I models.")
    vae = None
    vae_part = parts["vae"]
    if vae_part is not None:
        vae = _load_model(*vae_part, path, "vae", dtype, cfg.weights_variant)
        if vae.config.latent_channels != ucfg.in_channels:
            raise ModelError(f"The UNet of {cfg.model!r} takes {ucfg.in_channels} channels but its VAE makes "
                             f"{vae.config.latent_channels}; inpainting or depth models cannot guide text-to-3D.")
    elif ucfg.in_channels != 3:
        raise ModelError(f"The UNet of {cfg.model!r} takes {ucfg.in_channels} channels and the folder has no VAE; "
                         f"a pixel-space prior must take RGB (3 channels).")
    if ucfg.out_channels not in (ucfg.in_channels, 2 * ucfg.in_channels):
        raise ModelError(f"The UNet of {cfg.model!r} outputs {ucfg.out_channels} channels for {ucfg.in_channels} "
                         f"input channels; score distillation needs the noise (the same count, or twice that with a "
                         f"learned variance as in DeepFloyd IF). The folder is not a text-to-image prior.")
    text_encoder = _load_model(*text_part, path, "text_encoder", dtype, cfg.weights_variant)
    _check_text_width(cfg.model, text_encoder.config, ucfg)
    tokenizer = _load_tokenizer(tokenizer_part[1], path)
    scheduler = _load_scheduler(path)

    for module in (unet, vae, text_encoder):
        if module is not None:
            _freeze(module).to(device)
    sample_size = _int_size(ucfg.sample_size)
    scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
    return Prior(kind="latent" if vae is not None else "pixel", model_id=cfg.model, path=path, tokenizer=tokenizer,
                 text_encoder=text_encoder, unet=unet, scheduler=scheduler, vae=vae, sample_size=sample_size,
                 image_size=sample_size * scale, device=device, dtype=dtype, fingerprint=_fingerprint(path),
                 max_text_tokens=_max_text_tokens(tokenizer, text_encoder),
                 camera_features=camera)
