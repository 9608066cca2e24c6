"""Image to 3D without a prompt: the picture's caption, chosen by the prior itself.

A text-conditioned diffusion prior is also a zero-shot classifier (Li et al. 2023, "Your diffusion model is
secretly a zero-shot classifier"): of a set of captions, the one under which it best denoises noised copies of the
picture describes the picture. The captions are a template with word slots (``"a {colour} {object}"``) filled from
word lists (:data:`WORDS_FILE`, or the user's own); words the tokenizer cannot spell (unknown tokens, as most are
for the toy prior's twelve-word vocabulary) are left out. Every combination is tried when there are few, else the
slots are searched in turn (coordinate descent) until a pass changes nothing. Every caption is scored on the same
noised copies (same timesteps, same noise), by the prediction guided at the stage's scale at the picture's camera,
with the view words the picture's camera will get in score distillation.

Why a caption and not a learned embedding (:mod:`.inversion`): an embedding fitted to one view explains the picture
from its side but lies off the text encoder's manifold, and the prior draws something else from behind (measured
with the toy prior: a red cube's learned condition sampled as a red sphere, a dark cube and a blue cube from the
other three sides). A caption means the same from every side. Why a template and not any words: a free search over
the vocabulary finds word salad ("view view side", "green green green") that scores well only because it barely
guides. The caption is printed and recorded with the result.
"""

from __future__ import annotations

import itertools
import json
import math
import string
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..priors.prompts import VIEW_SUFFIXES, view_index
from ..runtime.errors import ConfigError

WORDS_FILE = Path(__file__).with_name("caption_words.json")


@dataclass
class CaptionConfig:
    """Choosing the picture's caption.

    Attributes:
        template: The caption with ``{slot}`` fields, each filled from the word list of that name.
        words_file: A JSON file ``{"slot": ["word", ...], ...}`` (``""``: the built-in lists of colours and materials
            and of common objects).
        exhaustive: Try every combination when there are at most this many, else search the slots in turn.
        sweeps: Most passes over the slots in that search.
        batch: Noised copies of the picture every caption is scored on.
        guidance_scale: Scale of the guided prediction that is scored (0: the stage's own).
        min_step_percent: Smallest timestep drawn, as a fraction of the scheduler's training steps.
        max_step_percent: Largest timestep drawn.
        min_margin: How clearly the caption must win to be used: for every slot, the best other word's error must
            be at least this fraction above the caption's (0: any caption is used). A caption that does not is
            reported and set aside, and the picture's condition is learned instead (``embedding``).
    """

    template: str = "a {colour} {object}"
    words_file: str = ""
    exhaustive: int = 256
    sweeps: int = 3
    batch: int = 64
    guidance_scale: float = 0.0
    min_step_percent: float = 0.1
    max_step_percent: float = 0.9
    min_margin: float = 0.0


@dataclass
class CaptionReading:
    """The caption the prior gave a picture.

    Attributes:
        text: The caption (the template filled in).
        margin: The smallest, over the slots, relative gap between the best other word's error and the caption's
            (``inf`` when no slot had a choice).
    """

    text: str
    margin: float

    def clear(self, cfg: CaptionConfig) -> bool:
        """Whether the caption won by at least ``cfg.min_margin``."""
        return self.margin >= cfg.min_margin


def word_lists(cfg: CaptionConfig) -> dict[str, list[str]]:
    """The template's slots and their word lists as the file gives them (checked before any model is loaded).

    Raises:
        ConfigError: An unreadable file, or a template field without a list of words.
    """
    path = Path(cfg.words_file).expanduser() if cfg.words_file else WORDS_FILE
    try:
        lists = json.loads(path.read_text(encoding="utf-8"))
        slots = [name for _, name, _, _ in string.Formatter().parse(cfg.template) if name is not None]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the caption word lists {str(path)!r} or the template {cfg.template!r}: "
                          f"{exc}") from exc
    if not slots:
        raise ConfigError(f"The caption template {cfg.template!r} has no {{slot}} to fill; e.g. 'a {{colour}} "
                          f"{{object}}'.")
    out = {}
    for slot in dict.fromkeys(slots):
        words = lists.get(slot) if isinstance(lists, dict) else None
        if not isinstance(words, list) or not words:
            raise ConfigError(f"The caption template {cfg.template!r} has the slot {{{slot}}} but {str(path)!r} has "
                              f"no list of words named {slot!r}.")
        out[slot] = [w for w in dict.fromkeys(str(w).strip() for w in words) if w]
    return out


def slot_words(cfg: CaptionConfig, tokenizer) -> dict[str, list[str]]:
    """The template's slots and the words of each the tokenizer can spell (no unknown token).

    Raises:
        ConfigError: As :func:`word_lists`, or a slot left with no word the tokenizer knows.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    out = {}
    for slot, words in word_lists(cfg).items():
        out[slot] = [w for w in words if unk not in tokenizer(w, add_special_tokens=False)["input_ids"]]
        if not out[slot]:
            raise ConfigError(f"The model's tokenizer knows none of the {slot!r} words for the caption; give word "
                              f"lists it can spell (image.caption.words_file) or a prompt.")
    return out


class _Scorer:
    """The guided denoising error of the picture under text conditions, on one fixed set of noised copies."""

    def __init__(self, guidance, picture: Tensor, azimuth: float, elevation: float, cfg: CaptionConfig,
                 generator: torch.Generator) -> None:
        self.guidance = guidance
        with torch.no_grad():
            x0 = guidance.encode(picture[None].to(guidance.device), generator)
        n, total = cfg.batch, guidance.num_train_timesteps
        lo, hi = int(cfg.min_step_percent * total), min(int(cfg.max_step_percent * total), total - 1)
        self.t = torch.randint(lo, max(hi, lo) + 1, (n,), generator=generator,
                               device=generator.device).to(guidance.device)
        noise = guidance._randn((n, *x0.shape[1:]), generator)
        self.x_t = guidance.noised(x0, noise, self.t)
        self.target = guidance.target(x0, noise, self.t)
        self.camera = guidance.camera(torch.full((n,), float(azimuth)), torch.full((n,), float(elevation)))
        self.scale = cfg.guidance_scale or guidance.cfg.guidance_scale
        self.uncond = self._predict(guidance.prompts.uncond[0].float())

    @torch.no_grad()
    def _predict(self, emb: Tensor) -> Tensor:
        return self.guidance.predict(self.x_t, self.t, emb[None].expand(self.x_t.shape[0], -1, -1), self.camera)

    def error(self, emb: Tensor) -> float:
        """Mean squared error of the guided prediction under the condition ``emb [L, D]``."""
        pred = self.uncond + self.scale * (self._predict(emb) - self.uncond)
        return F.mse_loss(pred, self.target).item()


def find_caption(guidance, picture: Tensor, azimuth: float, elevation: float, cfg: CaptionConfig,
                 generator: torch.Generator, view_dependent: bool = True, reporter=None) -> str:
    """The caption text of :func:`read_caption`."""
    return read_caption(guidance, picture, azimuth, elevation, cfg, generator, view_dependent, reporter).text


def read_caption(guidance, picture: Tensor, azimuth: float, elevation: float, cfg: CaptionConfig,
                 generator: torch.Generator, view_dependent: bool = True, reporter=None) -> CaptionReading:
    """The caption under which ``guidance``'s prior best denoises ``picture`` (``[H, W, 3]`` in [0, 1], the object
    on white) seen from ``azimuth``/``elevation`` (degrees).

    ``guidance``'s prior must still have its text encoder (the captions are embedded through its prompt processor
    and caches); the unconditional half is its prompts' (the empty text or the negative prompt), as in score
    distillation. With ``view_dependent``, every caption carries the view words of the picture's camera.
    """
    prompts = guidance.prompts
    slots = slot_words(cfg, guidance.prior.tokenizer)
    names = list(slots)
    scorer = _Scorer(guidance, picture, azimuth, elevation, cfg, generator)
    suffix = ""
    if view_dependent:
        suffix = VIEW_SUFFIXES[int(view_index(torch.tensor([float(azimuth)]), torch.tensor([float(elevation)])))]
    scores: dict[tuple[str, ...], float] = {}

    def score(choices: list[tuple[str, ...]]) -> None:
        todo = [c for c in dict.fromkeys(choices) if c not in scores]
        texts = [_caption(cfg, names, c) for c in todo]
        for text in texts:
            prompts.validate(text + suffix, "caption")
        for c, emb in zip(todo, prompts.embed([t + suffix for t in texts]), strict=True):
            scores[c] = scorer.error(emb.to(guidance.device))
            if reporter is not None:
                reporter.step(min(len(scores), reporter.total), scores[c])

    if _exhaustive(cfg, slots):
        score(list(itertools.product(*slots.values())))
        current = min(scores, key=lambda c: scores[c])
    else:
        current = tuple(words[0] for words in slots.values())
        for _sweep in range(cfg.sweeps):
            before = current
            for k, name in enumerate(names):
                trials = [current[:k] + (w,) + current[k + 1:] for w in slots[name]]
                score(trials)
                current = min(trials, key=lambda c: scores[c])
            if current == before:
                break
    margin = math.inf  # each slot's runner-up, the other slots as chosen (already scored unless a search was cut off)
    for k, name in enumerate(names):
        others = [current[:k] + (w,) + current[k + 1:] for w in slots[name] if w != current[k]]
        if others:
            score(others)
            best = max(scores[current], 1e-12)
            margin = min(margin, (min(scores[c] for c in others) - best) / best)
    return CaptionReading(_caption(cfg, names, current), margin)


def caption_candidates(cfg: CaptionConfig, tokenizer) -> int:
    """How many captions :func:`find_caption` scores at most (progress totals)."""
    slots = slot_words(cfg, tokenizer)
    sizes = [len(words) for words in slots.values()]
    return math.prod(sizes) if _exhaustive(cfg, slots) else cfg.sweeps * sum(sizes)


def _exhaustive(cfg: CaptionConfig, slots: dict[str, list[str]]) -> bool:
    """Whether every combination of the slots' words is tried (at most ``cfg.exhaustive`` of them)."""
    return math.prod(map(len, slots.values())) <= cfg.exhaustive


def _caption(cfg: CaptionConfig, names: list[str], choice: tuple[str, ...]) -> str:
    return cfg.template.format(**dict(zip(names, choice, strict=True)))
