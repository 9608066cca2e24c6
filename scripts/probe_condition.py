"""Does a picture's learned condition tell score distillation the picture's shape at the sides it does not show?

For pictures of the image sweep (``sweep_image_to_3d.py``'s objects and views at ``--seed``), the toy prior's
condition is learned from the picture with the draft's inversion settings (``core/picture/inversion.py``, at the
reference azimuth the prior finds). Then the four primitives, in the picture's colour, are rendered from six views
the picture does not show (turned by 90, 180 and 270 degrees, at the picture's elevation and at 20 degrees), and the
prior's guided prediction (empty text as the unconditional half, at ``--scale``) denoises noised copies of them
under each condition: the empty text, the object's true words, the learned condition. Score distillation moves a
shape towards the renders the prior denoises best, so per timestep band the script prints the shape whose renders
are denoised best and the margin of the picture's own shape (the best other shape's error minus its own: positive
when the condition prefers the picture's shape).

    python scripts/probe_condition.py [--pictures 0 3 13 14] [--seed 0] [--scale 20] [--min-step 0.02]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dreamsmith.core.guidance.camera import camera_features
from dreamsmith.core.guidance.sds import SDSGuidance
from dreamsmith.core.jobs.generate import generate_config
from dreamsmith.core.picture.inversion import estimate_azimuth, invert_picture
from dreamsmith.core.picture.load import load_reference
from dreamsmith.core.priors.models import load_prior
from dreamsmith.core.priors.prompts import PromptProcessor
from dreamsmith.eval.pictures import render_picture, sweep_pictures, write_picture
from dreamsmith.eval.shapes import TOY
from dreamsmith.eval.toy_prior_data import SHAPES

BANDS = ((20, 300), (300, 600), (600, 980))  # timesteps (of the scheduler's 1000)
TURNS = (90.0, 180.0, 270.0)


@torch.no_grad()
def guided_errors(guidance, prior, x0: torch.Tensor, azimuth: float, elevation: float, cond: torch.Tensor,
                  scale: float, n: int = 64) -> list[float]:
    """Mean squared error of the guided prediction on ``n`` noised copies of ``x0`` per band of :data:`BANDS` (the
    same noise for every condition)."""
    gen = torch.Generator().manual_seed(123)
    empty = guidance.prompts.uncond[0]
    out = []
    for lo, hi in BANDS:
        t = torch.randint(lo, hi, (n,), generator=gen)
        noise = torch.randn((n, *x0.shape[1:]), generator=gen)
        x_t = guidance.noised(x0.expand(n, -1, -1, -1), noise, t)
        cam = camera_features(torch.full((n,), azimuth), torch.full((n,), elevation), prior.camera_features)
        c, u = (prior.unet(x_t, t, encoder_hidden_states=q[None].expand(n, -1, -1), class_labels=cam).sample
                for q in (cond, empty))
        pred = (u + scale * (c - u))[:, :x0.shape[1]].float()
        out.append(F.mse_loss(pred, guidance.target(x0.expand(n, -1, -1, -1), noise, t)).item())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, nargs="+", default=[0, 3, 13, 14], help="sweep picture numbers")
    parser.add_argument("--seed", type=int, default=0, help="the sweep's seed (its views)")
    parser.add_argument("--scale", type=float, default=20.0, help="guidance scale of the judgement")
    parser.add_argument("--min-step", type=float, default=None, help="the inversion's smallest timestep fraction")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = generate_config("draft", {"seed": 0, "coarse_model": {"model": str(TOY)}}, picture=True)
    inversion = cfg.image.inversion
    if args.min_step is not None:
        inversion = dataclasses.replace(inversion, min_step_percent=args.min_step)
    prior = load_prior(cfg.coarse_model, torch.device("cpu"))
    for p in prior.unet.parameters():
        p.requires_grad_(False)
    pictures = sweep_pictures(args.seed, max(args.pictures) + 1)
    print("| picture | condition | best shape by band (low / mid / high noise) | margin of its own shape |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i in args.pictures:
            colour, shape, az, el = pictures[i]
            name = f"{i:02d}_{colour}_{shape}.{'png' if i % 2 == 0 else 'jpg'}"
            pic = write_picture(Path(tmp) / name, render_picture(shape, colour, az, el, alpha=i % 2 == 0))
            picture = torch.from_numpy(load_reference(pic, cfg.image.input).rgb)
            guidance = SDSGuidance(prior, PromptProcessor(prior, "", "", cfg.prompt, allow_empty=True),
                                   cfg.coarse_guidance)
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                ref_az = estimate_azimuth(guidance, picture, el, gen)
                conds = {"empty text": guidance.prompts.uncond[0],
                         f"a {colour} {shape}": guidance.prompts.embed([f"a {colour} {shape}"])[0]}
            conds["learned"] = invert_picture(guidance, picture, ref_az, el, inversion, gen)
            renders = {}
            for other in SHAPES:
                renders[other] = []
                for turn in TURNS:
                    for el2 in (el, 20.0):
                        p = write_picture(Path(tmp) / "view.png", render_picture(other, colour, az + turn, el2))
                        rgb = torch.from_numpy(load_reference(p, cfg.image.input).rgb)
                        renders[other].append((guidance.encode(rgb[None], gen), ref_az + turn, el2))
            for label, cond in conds.items():
                err = {s: np.mean([guided_errors(guidance, prior, x0, a, e, cond, args.scale)
                                   for x0, a, e in renders[s]], axis=0) for s in SHAPES}
                best = [min(SHAPES, key=lambda s, b=b: err[s][b]) for b in range(len(BANDS))]
                margin = [min(err[s][b] for s in SHAPES if s != shape) - err[shape][b] for b in range(len(BANDS))]
                print(f"| {name} | {label} | {' / '.join(best)} | {' / '.join(f'{m:+.3f}' for m in margin)} |",
                      flush=True)
                print(json.dumps({"picture": name, "condition": label, "errors": {s: [round(x, 4) for x in e]
                                                                                  for s, e in err.items()}}),
                      file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
