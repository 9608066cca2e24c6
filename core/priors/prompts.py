"""Prompt processing: validated, view-dependent text embeddings, computed once and cached.

Embeddings are keyed by (model fingerprint, text): an in-process dict, plus optional
safetensors files in a cache folder, so that the same prompt on the same model is never encoded
twice and the text encoder can be released as soon as the prompts are embedded.

View convention (as :func:`dreamsmith.core.scene.cameras.orbit_cameras`): azimuth 0 is the front (camera on
the -Y side), counter-clockwise seen from above. ``|az| <= 45``: front, ``45 < az < 135``: side,
``135 <= az <= 225``: back, ``225 < az < 315``: side; elevation above 60 degrees: overhead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..meshio import atomic_write
from ..runtime.errors import InputError, ModelError
from .models import Prior

VIEWS = ("front", "side", "back", "overhead")
VIEW_SUFFIXES = (", front view", ", side view", ", back view", ", overhead view")
MAX_PROMPT_CHARS = 1000

_MEMORY_CACHE: dict[tuple[str, str], Tensor] = {}  # (model fingerprint, text) -> [L, D] fp32 on CPU


def clear_embedding_cache() -> None:
    """Forget every in-process text embedding (on-disk caches are kept)."""
    _MEMORY_CACHE.clear()


def view_index(azimuth_deg: Tensor, elevation_deg: Tensor, front_half_width: float = 45.0,
               overhead_elevation: float = 60.0) -> Tensor:
    """Which of :data:`VIEWS` each camera sees the object from.

    Args:
        azimuth_deg: ``[B]`` azimuth in degrees (0 = front, any range; wrapped to [0, 360)).
        elevation_deg: ``[B]`` elevation in degrees.
        front_half_width: Half-width of the front sector (and of the back sector) in degrees.
        overhead_elevation: Cameras above this elevation are "overhead".

    Returns:
        ``[B]`` long: 0 front, 1 side, 2 back, 3 overhead.
    """
    az = torch.remainder(azimuth_deg.double(), 360.0)
    idx = torch.ones_like(az, dtype=torch.long)  # side
    idx[(az <= front_half_width) | (az >= 360.0 - front_half_width)] = 0
    idx[(az >= 180.0 - front_half_width) & (az <= 180.0 + front_half_width)] = 2
    idx[elevation_deg.to(az.device).double() > overhead_elevation] = 3
    return idx


def _embedding_writer(emb: Tensor, model_id: str, text: str) -> Callable[[Path], None]:
    """Writes one prompt's embedding as safetensors, with the model and the text in its metadata."""

    def write(path: Path) -> None:
        from safetensors.torch import save_file

        save_file({"embedding": emb.contiguous()}, str(path), metadata={"model": model_id, "text": text})

    return write


@dataclass
class PromptConfig:
    """How a prompt becomes text embeddings.

    Attributes:
        view_dependent: Append ", front view" / ", side view" / ", back view" / ", overhead view" by camera direction.
        view_negatives: Also put the other views' words into each view's negative prompt (fights multi-face results).
        front_half_width: Half-width in degrees of the front and back azimuth sectors.
        overhead_elevation: Elevation in degrees above which a view is "overhead".
        cache_dir: Folder for on-disk embedding caches (safetensors); ``None`` keeps them in memory only.
    """

    view_dependent: bool = True
    view_negatives: bool = False
    front_half_width: float = 45.0
    overhead_elevation: float = 60.0
    cache_dir: str | None = None


class PromptProcessor:
    """Text embeddings of one prompt (and its negative prompt) for each of the four views.

    Args:
        prior: The loaded prior (its tokenizer and, for prompts not yet cached, its text encoder).
        prompt: What to make, e.g. ``"a red cube"``.
        negative_prompt: What to avoid; ``""`` uses the unconditional (empty-text) embedding.
        cfg: View-dependent prompting and caching settings.
        allow_empty: Take an empty prompt as "no prompt": every view gets the empty text (no view words), so the
            conditional and unconditional predictions agree and score distillation follows the prior's
            unconditional score (image to 3D without a prompt).

    Raises:
        InputError: An empty prompt, or a prompt (with its view words) longer than the model reads.
        ModelError: The text encoder was already released and the prompt is not cached.
    """

    def __init__(self, prior: Prior, prompt: str, negative_prompt: str = "", cfg: PromptConfig | None = None,
                 allow_empty: bool = False) -> None:
        self.prior = prior
        self.cfg = cfg or PromptConfig()
        self.max_tokens = prior.max_text_tokens
        self.prompt = prompt.strip() if isinstance(prompt, str) else prompt
        self.negative_prompt = (negative_prompt or "").strip()
        if not isinstance(self.prompt, str) or not (self.prompt or allow_empty):
            raise InputError("The prompt is empty; describe the object to make, e.g. 'a red cube'.")
        self.texts = self._view_texts()
        self.negative_texts = self._negative_texts()
        for text in self.texts:
            self.validate(text, "prompt")
        for text in self.negative_texts:
            self.validate(text, "negative prompt")
        emb = self.embed([*self.texts, *self.negative_texts])
        self.cond = torch.stack(emb[:4]).to(prior.device)  # [4, L, D]
        self.uncond = torch.stack(emb[4:]).to(prior.device)  # [4, L, D]

    # ------------------------------------------------------------------ texts
    def _view_texts(self) -> list[str]:
        if not self.cfg.view_dependent or not self.prompt:
            return [self.prompt] * 4
        return [self.prompt + suffix for suffix in VIEW_SUFFIXES]

    def _negative_texts(self) -> list[str]:
        if not (self.cfg.view_dependent and self.cfg.view_negatives and self.prompt):
            return [self.negative_prompt] * 4
        out = []
        for v in range(4):
            others = ", ".join(f"{VIEWS[o]} view" for o in range(4) if o != v)
            out.append(f"{self.negative_prompt}, {others}" if self.negative_prompt else others)
        return out

    def n_tokens(self, text: str) -> int:
        """Tokens the tokenizer makes of ``text``, special tokens included."""
        return len(self.prior.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def validate(self, text: str, what: str = "prompt") -> None:
        """Raise :class:`InputError` when ``text`` is longer than the model can read."""
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"The {what} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}. "
                             f"Shorten it.")
        n = self.n_tokens(text)
        if n > self.max_tokens:
            views = " with its view words" if self.cfg.view_dependent and what == "prompt" else ""
            raise InputError(f"The {what}{views} is {n} tokens long but the model {self.prior.model_id!r} reads at "
                             f"most {self.max_tokens}; shorten it" + (" or turn off view-dependent prompts" if views
                                                                      else "") + f": {text!r}.")

    # ------------------------------------------------------------------ embeddings
    def _disk_path(self, text: str) -> Path | None:
        if not self.cfg.cache_dir:
            return None
        key = hashlib.sha256(f"{self.prior.fingerprint}\0{text}".encode()).hexdigest()[:40]
        return Path(self.cfg.cache_dir).expanduser() / f"{key}.safetensors"

    def embed(self, texts: list[str]) -> list[Tensor]:
        """``[L, D]`` fp32 CPU embeddings of ``texts``, from the caches or (missing ones, in one batch) the encoder."""
        from safetensors.torch import load_file

        fp = self.prior.fingerprint
        missing = []
        for text in dict.fromkeys(texts):
            if (fp, text) in _MEMORY_CACHE:
                continue
            disk = self._disk_path(text)
            if disk is not None and disk.is_file():
                _MEMORY_CACHE[(fp, text)] = load_file(str(disk))["embedding"]
            else:
                missing.append(text)
        if missing:
            for text, emb in zip(missing, self._encode(missing), strict=True):
                _MEMORY_CACHE[(fp, text)] = emb
                disk = self._disk_path(text)
                if disk is not None:
                    atomic_write([disk], [_embedding_writer(emb, self.prior.model_id, text)])
        return [_MEMORY_CACHE[(fp, text)] for text in texts]

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> Tensor:
        """Run the text encoder once on ``texts``: ``[N, L, D]`` fp32 on CPU."""
        enc = self.prior.text_encoder
        if enc is None:
            raise ModelError("The text encoder was already released; create every PromptProcessor before "
                             "release_text_encoder(), or load the model again.")
        tok = self.prior.tokenizer(texts, padding="max_length", max_length=self.max_tokens, truncation=True,
                                   return_tensors="pt")
        ids = tok["input_ids"].to(self.prior.device)
        # T5 (DeepFloyd IF) is run with its padding mask, CLIP (Stable Diffusion) without, as in their pipelines.
        use_mask = getattr(enc.config, "model_type", "") == "t5" or getattr(enc.config, "use_attention_mask", False)
        mask = tok["attention_mask"].to(self.prior.device) if use_mask else None
        out = enc(ids, attention_mask=mask)[0]
        return out.float().cpu()

    def embeddings(self, views: Tensor) -> tuple[Tensor, Tensor]:
        """Negative/unconditional and conditional embeddings per view: ``([B, L, D], [B, L, D])`` fp32."""
        views = views.to(self.cond.device)
        return self.uncond[views], self.cond[views]

    def view_index(self, azimuth_deg: Tensor, elevation_deg: Tensor) -> Tensor:
        """``[B]`` view of each camera (see :func:`view_index`), with this processor's thresholds."""
        return view_index(azimuth_deg, elevation_deg, self.cfg.front_half_width, self.cfg.overhead_elevation)

    def release_text_encoder(self) -> None:
        """Delete the prior's text encoder (embeddings are computed), collect garbage and empty the CUDA cache."""
        self.prior.release_text_encoder()
