"""Image to 3D's picture before the stages: its camera (the user's elevation and field of view), the turn it was
seen from, its reading as words (a caption the prior finds) and, when no words fit, the text condition learned
from it (textual inversion). The stages then take it as any other objective (:mod:`..stages.reference_view`)."""

from __future__ import annotations

import dataclasses

import torch

from ..guidance.sds import SDSConfig, SDSGuidance
from ..priors.prompts import PromptConfig, PromptProcessor
from ..runtime.errors import InputError
from ..runtime.events import CancelToken, ProgressCallback, StageReporter
from .caption import caption_candidates, read_caption
from .inversion import condition_on_picture, estimate_azimuth
from .load import ReferenceImage
from .reference_view import ImageConfig


def picture_camera(image: ImageConfig, elevation: float | None, fov: float | None) -> ImageConfig:
    """``image`` with the picture's camera (``--elevation``, ``--fov``; None keeps the config's) put in."""
    image = dataclasses.replace(image, elevation=image.elevation if elevation is None else float(elevation),
                                fov=image.fov if fov is None else float(fov))
    if image.fov != 0 and not 5.0 <= image.fov <= 150.0:
        raise InputError(f"The picture's field of view must be between 5 and 150 degrees (0: the model's own), "
                         f"got {image.fov}.")
    if not -90.0 < image.elevation < 90.0:
        raise InputError(f"The picture's elevation must be between -90 and 90 degrees, got {image.elevation}.")
    return image


def read_picture(prior, prompt: str, negative_prompt: str, image: ImageConfig, prompt_cfg: PromptConfig,
                 sds_cfg: SDSConfig, reference: ReferenceImage, gen: torch.Generator,
                 callback: ProgressCallback | None, cancel: CancelToken | None) -> torch.Tensor | None:
    """Find the turn the picture was seen from (when ``image.find_azimuth``) and, without a prompt and with
    ``image.condition == "caption"``, read it as words: a clear reading becomes ``reference.caption``, a narrow one
    is kept aside (``caption_read``, ``caption_margin``). Returns where learning the picture's condition starts: the
    narrow reading's text condition with ``inversion.from_caption``, else None (the empty text)."""
    probe = SDSGuidance(prior, PromptProcessor(prior, prompt, negative_prompt, prompt_cfg, allow_empty=True), sds_cfg)
    picture = torch.from_numpy(reference.rgb)
    if image.find_azimuth:
        reference.azimuth = estimate_azimuth(probe, picture, image.elevation, gen)
    start = None
    if not prompt and image.condition == "caption":
        reporter = StageReporter("picture", caption_candidates(image.caption, prior.tokenizer), callback, cancel,
                                 every=4)
        reading = read_caption(probe, picture, reference.azimuth, image.elevation, image.caption, gen,
                               prompt_cfg.view_dependent, reporter)
        reference.caption_read, reference.caption_margin = reading.text, reading.margin
        if reading.clear(image.caption):  # else the condition is learned from the picture
            reference.caption = reading.text
        elif image.inversion.from_caption:
            start = probe.prompts.embed([reading.text])[0]
    return start


def picture_condition(image: ImageConfig, guidance: SDSGuidance, reference: ReferenceImage, gen: torch.Generator,
                      callback: ProgressCallback | None, cancel: CancelToken | None,
                      start: torch.Tensor | None = None) -> None:
    """Image to 3D without a prompt: the condition learned from the picture (from ``start``, a text condition of
    ``guidance``'s encoder; None: the empty text) becomes ``guidance``'s prompt."""
    inv = image.inversion
    condition_on_picture(guidance, torch.from_numpy(reference.rgb), reference.azimuth, image.elevation, inv, gen,
                         StageReporter("picture", inv.steps, callback, cancel, every=5), start)
