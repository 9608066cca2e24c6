"""Image to 3D's draft coarse step with and without normals for faint samples, side by side on the same fields.

For each shape, a picture of the toy prior's object (as ``sweep_image_to_3d.py`` renders them) goes through the
draft preset's image-to-3D coarse stage (``--steps`` of it, the rest of the job is not run); then one whole coarse
step (the reference view and the lit score-distillation views, forward and backward) is timed on that field with
the volume's default normal threshold (normals for every sample over 0.001 of its pixel) and with the draft's
``coarse.volume.normal_min_weight`` (0.01), alternately, ``--repeats`` times each, with the same random numbers for
both. Printed: median seconds a step, their ratio, and the largest change of any pixel of the score-distillation
views between the two.

    python scripts/bench_image_coarse.py [--steps 150] [--repeats 5] [--threads N] [--shapes cube,torus]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dreamsmith.core.jobs import generate, pipeline
from dreamsmith.core.render.volume import VolumeConfig
from dreamsmith.eval.pictures import render_picture, write_picture
from dreamsmith.eval.shapes import TOY
from dreamsmith.eval.toy_prior_data import SHAPES


class _Stop(Exception):
    """Raised once the coarse stage is trained: the rest of the job is not needed."""


def trained_coarse(shape: str, steps: int, folder: Path) -> dict:
    """The draft image-to-3D coarse stage's field, occupancy, renderer and objective after ``steps`` steps."""
    pic = write_picture(folder / f"{shape}.png", render_picture(shape, "red", 40.0, 15.0))
    cfg = generate.generate_config("draft", {"coarse": {"steps": steps}, "coarse_model": {"model": str(TOY)}},
                                      picture=True)
    got, real = {}, pipeline.train_coarse

    def capture(ccfg, objective, *args, **kwargs):
        got["field"], got["occ"], got["renderer"] = real(ccfg, objective, *args, **kwargs)
        got["objective"], got["steps"] = objective, ccfg.steps
        raise _Stop

    pipeline.train_coarse = capture
    try:
        generate.run_generate("", folder / f"{shape}.glb", cfg, device="cpu", preset="draft", image=pic,
                              elevation=15.0)
    except _Stop:
        pass
    finally:
        pipeline.train_coarse = real
    return got


def one_step(got: dict, threshold: float, seed: int) -> tuple[float, torch.Tensor]:
    """Seconds for one coarse step's loss and backward at ``threshold``, and the lit views it rendered."""
    renderer, field = got["renderer"], got["field"]
    renderer.config = dataclasses.replace(renderer.config, normal_min_weight=threshold)
    views, real_render = [], renderer.render_image

    def render(*args, **kwargs):
        out = real_render(*args, **kwargs)
        if kwargs.get("shading", "albedo") != "albedo":
            views.append(out["rgb"].detach())
        return out

    renderer.render_image = render
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    loss = got["objective"](field, got["occ"], renderer, got["steps"], got["steps"], gen)
    loss.backward()
    seconds = time.perf_counter() - t0
    del renderer.render_image
    field.zero_grad(set_to_none=True)
    return seconds, torch.cat(views)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150, help="coarse steps trained before timing")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per threshold")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated toy-prior shapes")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    default = VolumeConfig().normal_min_weight
    draft = generate.generate_config("draft").coarse.volume.normal_min_weight
    print(f"torch threads {torch.get_num_threads()}; normal threshold {default} (volume default) vs {draft} (draft "
          f"preset)\n")
    print("| shape | s a step, 0.001 | s a step, draft | ratio | largest pixel change |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            got = trained_coarse(shape, args.steps, Path(tmp))
            one_step(got, default, 0)  # warm-up
            times = {default: [], draft: []}
            change = 0.0
            for r in range(args.repeats):
                (t_a, a), (t_b, b) = one_step(got, default, r), one_step(got, draft, r)
                times[default].append(t_a)
                times[draft].append(t_b)
                change = max(change, float((a - b).abs().max()))
            slow, fast = statistics.median(times[default]), statistics.median(times[draft])
            print(f"| {shape} | {slow:.3f} | {fast:.3f} | {slow / fast:.2f} | {change:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
