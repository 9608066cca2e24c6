"""Image to 3D without a prompt: a text condition learned from the picture (textual inversion, as RealFusion does).

Score distillation with an empty prompt follows the prior's unconditional score, which pulls every unseen side
towards the average of everything the prior knows (a blob; measured in the README's image-to-3D table). Instead the
picture is turned into the condition: the text encoder's output (``[L, D]``, for CLIP, T5 or the toy prior's
encoder alike) is optimised so that the frozen prior, told the reference camera and guided by it at the stage's
classifier-free guidance scale, denoises noised copies of the picture well: score distillation at the picture's
own view is then at rest (its gradient is the guided prediction's error), whatever the prior reads from the
condition. Plain inversion (scale 1) is not enough: a prior that reads the colour from the noisy image itself at
low noise leaves the condition's colour free, and guidance then paints the unseen sides any colour. Score
distillation on the other views then uses it as the prompt, with the empty text as the
unconditional half: the guidance points from "anything" towards "what the picture shows". The prior's weights
never change; only ``L x D`` numbers are learned (seconds on a CPU for the toy prior).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime.events import StageReporter
from ..stages.loop import run_steps


@dataclass
class InversionConfig:
    """Learning the picture's text condition.

    Attributes:
        steps: Optimisation steps (0: no inversion; an empty prompt then means unconditioned score distillation).
        batch: Noised copies of the picture per step.
        lr: Adam learning rate of the embedding.
        min_step_percent: Smallest timestep drawn, as a fraction of the scheduler's training steps.
        max_step_percent: Largest timestep drawn.
        guided: Fit the guided prediction at the stage's guidance scale (else the conditional one alone).
        from_caption: With ``image.condition: caption`` and a reading too narrow to use, start from that reading's
            text condition instead of the empty text (the words the prior found, corrected by the picture).
    """

    steps: int = 300
    batch: int = 8
    lr: float = 0.005
    min_step_percent: float = 0.02
    max_step_percent: float = 0.98
    guided: bool = True
    from_caption: bool = False


def invert_picture(guidance, picture: Tensor, azimuth: float, elevation: float, cfg: InversionConfig,
                   generator: torch.Generator, reporter=None, start: Tensor | None = None) -> Tensor:
    """The condition ``[L, D]`` (fp32) under which ``guidance``'s prior best denoises ``picture``.

    Args:
        guidance: An :class:`~.sds.SDSGuidance` (its prior, scheduler, encoder and empty-text embedding).
        picture: ``[H, W, 3]`` in [0, 1], the object on white at the reference camera.
        azimuth, elevation: The reference camera (degrees), for a prior that takes the camera.
        cfg: Steps, batch, learning rate and timesteps.
        generator: The job's random generator.
        reporter: Optional :class:`~dreamsmith.core.runtime.events.StageReporter` (progress and cancellation).
        start: The condition ``[L, D]`` to start from (None: the empty text).
    """
    empty = guidance.prompts.uncond[0].detach().float()  # the empty text, [L, D]
    emb = (empty if start is None else start.detach().float().to(empty.device)).clone().requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=cfg.lr)
    with torch.no_grad():
        x0 = guidance.encode(picture[None].to(guidance.device), generator)  # [1, C, S, S]
    camera = guidance.camera(torch.full((cfg.batch,), float(azimuth)), torch.full((cfg.batch,), float(elevation)))
    n = guidance.num_train_timesteps
    lo, hi = int(cfg.min_step_percent * n), min(int(cfg.max_step_percent * n), n - 1)
    scale = guidance.cfg.guidance_scale if cfg.guided else 1.0
    empty_b = empty[None].expand(cfg.batch, -1, -1)
    def loss_fn(step: int) -> Tensor:
        t = torch.randint(lo, max(hi, lo) + 1, (cfg.batch,), generator=generator,
                          device=generator.device).to(guidance.device)
        noise = guidance._randn((cfg.batch, *x0.shape[1:]), generator)
        x_t = guidance.noised(x0, noise, t)
        pred = guidance.predict(x_t, t, emb[None].expand(cfg.batch, -1, -1), camera)
        if scale != 1.0:
            with torch.no_grad():
                uncond = guidance.predict(x_t, t, empty_b, camera)
            pred = uncond + scale * (pred - uncond)
        return F.mse_loss(pred, guidance.target(x0, noise, t))

    run_steps(cfg.steps, opt, loss_fn, reporter or StageReporter("inversion", cfg.steps, None, None),
              diverged="Learning the picture's condition diverged: lower image.inversion.lr or set "
                       "image.inversion.steps to 0 (an empty prompt then guides the unseen sides).")
    return emb.detach()


@torch.no_grad()
def estimate_azimuth(guidance, picture: Tensor, elevation: float, generator: torch.Generator, step_deg: float = 10.0,
                     batch: int = 32) -> float:
    """The azimuth (degrees) from which a camera-conditioned prior best explains ``picture``: the turn of the object
    about the vertical, in the prior's own frame (0 for a prior without the camera as an input).

    Every candidate is scored on the same noised copies of the picture by the prior's unconditional denoising error
    (the empty text: the picture's own condition is not learned yet). A cube seen from 30 degrees is then told
    apart from one seen face-on, which the prior draws differently.
    """
    if not guidance.prior.camera_features:
        return 0.0
    x0 = guidance.encode(picture[None].to(guidance.device), generator)
    n = guidance.num_train_timesteps
    t = torch.randint(int(0.1 * n), int(0.98 * n), (batch,), generator=generator,
                      device=generator.device).to(guidance.device)
    noise = guidance._randn((batch, *x0.shape[1:]), generator)
    x_t = guidance.noised(x0, noise, t)
    target = guidance.target(x0, noise, t)  # by the prediction type: a v-prediction prior is scored on v
    empty = guidance.prompts.uncond[0][None].expand(batch, -1, -1)
    elevations = torch.full((batch,), float(elevation))
    best, best_loss = 0.0, float("inf")
    for az in torch.arange(0.0, 360.0, step_deg).tolist():
        pred = guidance.predict(x_t, t, empty, guidance.camera(torch.full((batch,), az), elevations))
        loss = F.mse_loss(pred, target).item()
        if loss < best_loss:
            best, best_loss = az, loss
    return best


def condition_on_picture(guidance, picture: Tensor, azimuth: float, elevation: float, cfg: InversionConfig,
                         generator: torch.Generator, reporter=None, start: Tensor | None = None) -> None:
    """Make the picture's learned condition ``guidance``'s prompt for every view (the empty text stays the
    unconditional half), learned from ``start`` (None: the empty text); nothing happens when ``cfg.steps`` is 0."""
    if cfg.steps <= 0:
        return
    for p in guidance.prior.unet.parameters():
        p.requires_grad_(False)
    emb = invert_picture(guidance, picture, azimuth, elevation, cfg, generator, reporter, start)
    guidance.prompts.cond = emb[None].expand_as(guidance.prompts.cond).to(guidance.prompts.cond.dtype).clone()
