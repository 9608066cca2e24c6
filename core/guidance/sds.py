"""Score distillation sampling (SDS) against a frozen diffusion prior (DreamFusion / Magic3D).

For a batch of renders, one UNet pass predicts the noise of a noised copy with classifier-free
guidance; the SDS gradient ``w(t) (eps_hat - eps)`` is pushed into the renders through a
surrogate loss. The UNet, the VAE and the text embeddings never carry gradients; only the render
(and, for latent priors, the path through the VAE encoder to it) does.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..priors.models import Prior
from ..priors.prompts import PromptProcessor
from ..runtime.errors import ConfigError
from .camera import camera_features


@dataclass
class SDSConfig:
    """Score distillation settings.

    Attributes:
        guidance_scale: Classifier-free guidance scale ``s`` (eps = eps_u + s (eps_c - eps_u)); ~100 for DeepFloyd IF
            and Stable Diffusion in DreamFusion/Magic3D; ~20-30 for the toy prior.
        min_step_percent: Smallest timestep, as a fraction of the scheduler's training steps.
        max_step_percent: Largest timestep at the start of the run.
        max_step_percent_end: Largest timestep at the end of the annealing (equal to ``max_step_percent``: none).
        anneal: How the largest timestep moves from ``max_step_percent`` to ``max_step_percent_end``: ``"linear"``
            in the progress ``p``, ``"sqrt"`` in ``sqrt(p)`` (fast early, slow late) or ``"none"``.
        anneal_fraction: Fraction of the run over which the annealing happens (afterwards it stays at the end value).
        schedule: How each step's timestep is chosen: ``"random"``, uniformly in ``[min_step_percent, t_max]`` (t_max
            as annealed); ``"decreasing"``, one timestep for the whole batch falling linearly from
            ``max_step_percent`` to ``min_step_percent`` over the run (the monotonically non-increasing schedules
            of DreamTime, Huang et al. 2023, and DreamGaussian, Tang et al. 2023: coarse structure first, detail
            last, in fewer steps).
        weighting: ``w(t)``: ``"sds"`` = ``1 - alpha_bar_t`` (``sigma_t^2``, DreamFusion's choice), ``"uniform"`` =
            1, ``"fantasia3d"`` = ``sqrt(alpha_bar_t) (1 - alpha_bar_t)``.
        grad_clip: Clip the SDS gradient (0: off): elementwise to ``[-c, c]`` (``"value"``) or each sample's
            L2 norm to at most ``c`` (``"norm"``). Applied after NaN/inf entries are zeroed.
        grad_clip_mode: ``"value"`` or ``"norm"``.
        half_precision: On CUDA, run the UNet and VAE under fp16 autocast (even with fp32 weights). Ignored elsewhere.
        vae_grad_checkpointing: Recompute the VAE encoder's activations in the backward pass (latent priors;
            saves memory at 512x512, costs one more encoder pass).
        score: The gradient: ``"sds"`` = ``w(t) (eps_hat - eps)`` (DreamFusion); ``"csd"`` = ``w(t) s (eps_c - eps_u)``,
            the classifier part alone (Classifier Score Distillation, Yu et al. 2023): no noise residual, so a
            far less noisy gradient, and no pull towards the prior's unconditional mode.
    """

    guidance_scale: float = 100.0
    min_step_percent: float = 0.02
    max_step_percent: float = 0.98
    max_step_percent_end: float = 0.98
    anneal: Literal["none", "linear", "sqrt"] = "none"
    anneal_fraction: float = 1.0
    schedule: Literal["random", "decreasing"] = "random"
    weighting: Literal["sds", "uniform", "fantasia3d"] = "sds"
    grad_clip: float = 0.0
    grad_clip_mode: Literal["value", "norm"] = "value"
    half_precision: bool = True
    vae_grad_checkpointing: bool = False
    score: Literal["sds", "csd"] = "sds"


def max_step_percent(cfg: SDSConfig, step: int, total_steps: int) -> float:
    """The largest timestep fraction at ``step`` of ``total_steps`` under ``cfg``'s annealing."""
    if cfg.anneal == "none" or total_steps <= 0:
        return cfg.max_step_percent
    p = min(max(step / max(total_steps * cfg.anneal_fraction, 1e-8), 0.0), 1.0)
    if cfg.anneal == "sqrt":
        p = math.sqrt(p)
    return cfg.max_step_percent + (cfg.max_step_percent_end - cfg.max_step_percent) * p


class SDSGuidance:
    """Score distillation against a pixel or latent diffusion prior.

    Args:
        prior: The frozen prior (from :func:`dreamsmith.core.priors.models.load_prior`).
        prompts: The embedded prompts (its text encoder may already be released).
        cfg: Settings.
    """

    def __init__(self, prior: Prior, prompts: PromptProcessor, cfg: SDSConfig | None = None) -> None:
        self.prior = prior
        self.prompts = prompts
        self.cfg = cfg or SDSConfig()
        c = self.cfg
        if c.schedule not in ("random", "decreasing"):
            raise ConfigError(f"SDS schedule must be 'random' or 'decreasing', got {c.schedule!r}.")
        if c.score not in ("sds", "csd"):
            raise ConfigError(f"SDS score must be 'sds' or 'csd', got {c.score!r}.")
        if not (0.0 <= c.min_step_percent <= c.max_step_percent <= 1.0
                and c.min_step_percent <= c.max_step_percent_end <= 1.0):
            raise ConfigError("SDS step fractions must satisfy 0 <= min_step_percent <= max_step_percent(_end) <= 1.")
        self.device = prior.device
        self.num_train_timesteps = int(prior.scheduler.config.num_train_timesteps)
        self.alphas_cumprod = prior.scheduler.alphas_cumprod.to(self.device, torch.float32)  # [T]
        self.prediction_type = prior.scheduler.config.prediction_type
        if prior.vae is not None:  # set both ways: a batch worker's kept prior serves jobs with either setting
            if c.vae_grad_checkpointing:
                prior.vae.enable_gradient_checkpointing()
            elif prior.vae.is_gradient_checkpointing:
                prior.vae.disable_gradient_checkpointing()

    @property
    def image_size(self) -> int:
        """Resolution the renders are resized to before the prior sees them."""
        return self.prior.image_size

    def _autocast(self):
        if self.cfg.half_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        """Normal noise drawn on the generator's device (reproducible), moved to the prior's device."""
        dev = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=dev).to(self.device)

    def encode(self, rgb: Tensor, generator: torch.Generator | None) -> Tensor:
        """What the UNet denoises, with gradients to ``rgb [B, H, W, 3]``: images or VAE latents ``[B, C, S, S]``."""
        x = rgb.permute(0, 3, 1, 2).float()  # [B, 3, H, W]
        size = self.prior.image_size
        if x.shape[-2:] != (size, size):
            # antialias when shrinking: every rendered pixel gets its share of the gradient (no aliasing noise)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=bool(x.shape[-1] > size))
        x = 2.0 * x - 1.0
        vae = self.prior.vae
        if vae is None:
            return x
        with self._autocast():
            dist = vae.encode(x.to(vae.dtype)).latent_dist
        mean, std = dist.mean.float(), dist.std.float()
        z = mean + std * self._randn(tuple(mean.shape), generator)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (z - shift) * vae.config.scaling_factor

    def noised(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x0`` noised to timesteps ``t [B]``: ``sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise``."""
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the UNet should predict for ``x0`` noised with ``noise`` at ``t``: the noise, ``v`` or the clean
        sample, by the scheduler's prediction type (the denoising error of inversion and captioning)."""
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        if self.prediction_type == "v_prediction":
            return a.sqrt() * noise - (1.0 - a).sqrt() * x0
        if self.prediction_type == "sample":
            return x0.expand_as(noise)
        return noise

    def weight(self, t: Tensor) -> Tensor:
        """``w(t)`` per sample, ``[B]``."""
        a = self.alphas_cumprod[t]
        if self.cfg.weighting == "sds":
            return 1.0 - a
        if self.cfg.weighting == "uniform":
            return torch.ones_like(a)
        return a.sqrt() * (1.0 - a)

    def camera(self, azimuth: Tensor, elevation: Tensor) -> Tensor | None:
        """``[B, F]`` camera features of views at ``azimuth``/``elevation`` (degrees, ``[B]``) for a prior that
        takes the camera as an input; None for one that does not."""
        if not self.prior.camera_features:
            return None
        return camera_features(azimuth, elevation, self.prior.camera_features).to(self.device)

    def predict(self, x_t: Tensor, t: Tensor, emb: Tensor, camera: Tensor | None = None) -> Tensor:
        """The prior's raw prediction (noise, ``v`` or the clean sample, by its prediction type; fp32,
        ``[B, C, S, S]``) for ``x_t`` at timesteps ``t [B]`` under text conditions ``emb [B, L, D]`` and, for a
        prior that takes them, camera features ``camera [B, F]``. The one place the UNet is called: score
        distillation, the picture's inversion, caption and azimuth all go through it. Gradients flow to ``emb``
        when it needs them."""
        unet = self.prior.unet
        extra = {"class_labels": camera.to(x_t.device, unet.dtype)} if camera is not None else {}
        with self._autocast():
            out = unet(x_t.to(unet.dtype), t, encoder_hidden_states=emb.to(unet.dtype), **extra).sample.float()
        return out[:, :x_t.shape[1]]  # models that also predict a variance (DeepFloyd IF) output 2C channels

    @torch.no_grad()
    def predict_noise_pair(self, x_t: Tensor, t: Tensor, uncond: Tensor, cond: Tensor,
                           camera: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Unconditional and conditional noise predictions (each ``[B, C, S, S]``, fp32) from one UNet pass.

        ``camera``: ``[B, F]`` camera features for a prior that takes them (:mod:`.camera`); both halves get them.
        """
        b = x_t.shape[0]
        x2 = torch.cat([x_t, x_t])
        t_in = torch.cat([t, t])
        out = self.predict(x2, t_in, torch.cat([uncond, cond]), None if camera is None else torch.cat([camera, camera]))
        a = self.alphas_cumprod[t_in].view(-1, 1, 1, 1)
        if self.prediction_type == "v_prediction":
            out = a.sqrt() * out + (1.0 - a).sqrt() * x2
        elif self.prediction_type == "sample":
            out = (x2 - a.sqrt() * out) / (1.0 - a).sqrt().clamp_min(1e-8)
        return out[:b], out[b:]

    def __call__(self, rgb: Tensor, azimuth: Tensor, elevation: Tensor, step: int, total_steps: int,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One SDS evaluation.

        Args:
            rgb: ``[B, H, W, 3]`` renders in [0, 1], with gradients to the 3D representation.
            azimuth: ``[B]`` camera azimuths in degrees (0 = front): choose the view-dependent prompt (and are the
                camera input of a prior that takes one).
            elevation: ``[B]`` camera elevations in degrees.
            step: Current optimisation step (for annealing).
            total_steps: Steps in the run.
            generator: Source of the timesteps and noise (same seed: same gradient on the same device).

        Returns:
            ``loss_sds``: scalar surrogate loss, ``0.5 * sum((z - sg(z - g))^2) / B``, so that its gradient with
            respect to each sample's latents ``z`` (or image, for pixel priors) is ``g / B``: the batch mean of the
            SDS gradient ``g = clip(w(t) (eps_hat - eps))``. Its value is not meaningful, only its gradient.
            ``grad_norm``: L2 norm of ``g`` (detached). ``t``: ``[B]`` timesteps. ``views``: ``[B]`` view indices.
            ``nonfinite``: fraction of gradient entries that were NaN/inf and zeroed (a stage may stop on it).
        """
        if rgb.dim() != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"SDS expects renders [B, H, W, 3], got {tuple(rgb.shape)}")
        b = rgb.shape[0]
        latents = self.encode(rgb, generator)  # [B, C, S, S]
        t_max = max_step_percent(self.cfg, step, total_steps)
        lo = int(self.cfg.min_step_percent * self.num_train_timesteps)
        hi = max(int(t_max * self.num_train_timesteps), lo)
        hi = min(hi, self.num_train_timesteps - 1)
        lo = min(lo, hi)
        gen_dev = generator.device if generator is not None else self.device
        if self.cfg.schedule == "decreasing":
            p = min(max(step / max(total_steps, 1), 0.0), 1.0)
            top = min(int(self.cfg.max_step_percent * self.num_train_timesteps), self.num_train_timesteps - 1)
            t = torch.full((b,), round(top + (lo - top) * p), dtype=torch.long, device=self.device)
        else:
            t = torch.randint(lo, hi + 1, (b,), generator=generator, device=gen_dev).to(self.device)
        noise = self._randn(tuple(latents.shape), generator)
        views = self.prompts.view_index(azimuth, elevation).to(self.device)
        uncond, cond = self.prompts.embeddings(views)
        with torch.no_grad():
            x_t = self.noised(latents.detach(), noise, t)
            eps_u, eps_c = self.predict_noise_pair(x_t, t, uncond, cond, self.camera(azimuth, elevation))
            if self.cfg.score == "csd":
                residual = self.cfg.guidance_scale * (eps_c - eps_u)
            else:
                residual = eps_u + self.cfg.guidance_scale * (eps_c - eps_u) - noise
            grad = self.weight(t).view(-1, 1, 1, 1) * residual
            finite = torch.isfinite(grad)
            nonfinite = 1.0 - finite.float().mean()
            grad = torch.where(finite, grad, torch.zeros_like(grad))
            grad = self._clip(grad)
        target = (latents - grad).detach()
        loss = 0.5 * F.mse_loss(latents, target, reduction="sum") / b
        return {"loss_sds": loss, "grad_norm": grad.norm(), "t": t, "views": views, "nonfinite": nonfinite}

    def _clip(self, grad: Tensor) -> Tensor:
        c = self.cfg.grad_clip
        if c <= 0:
            return grad
        if self.cfg.grad_clip_mode == "value":
            return grad.clamp(-c, c)
        norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return grad * (c / norm.clamp_min(1e-12)).clamp(max=1.0)
