"""Reconstruction benchmark: render synthetic objects, reconstruct them, and print quality and time.

For each object: 40 RGBA training views and 8 held-out views at 128x128 (rendered here by sphere
tracing an analytic SDF with flat, unlit part colours), ``reconstruct`` with the chosen preset,
then
- symmetric Chamfer distance between the exported mesh and the true surface (marching cubes of the
  SDF at 256^3), as a percentage of the true bounding-box diagonal, both directions reported;
- PSNR of the baked texture on the held-out views: the exported GLB (read back from disk) is
  rasterised with its texture, flat and unlit, composited on white, against the renders on white.

    python scripts/bench_reconstruct.py [--objects snowman mug box_ball] [--preset draft] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dreamsmith.core.geometry.metrics import chamfer_meshes, psnr
from dreamsmith.core.jobs.reconstruct import reconstruct_config, run_reconstruct
from dreamsmith.core.meshio import TexturedMesh, read_mesh
from dreamsmith.core.render.mesh import render_textured
from dreamsmith.core.scene.datasets import load_posed_images
from dreamsmith.eval.synth_objects import ground_truth_mesh, write_dataset


def log_progress(ev) -> None:
    """Print a line every 50 steps (benchmarks run unattended)."""
    if ev.step % 50 == 0 or ev.step == ev.total:
        loss = f" loss {ev.loss:.5f}" if ev.loss is not None else ""
        print(f"  {ev.stage} {ev.step}/{ev.total} {ev.seconds:.0f}s{loss}", file=sys.stderr, flush=True)


def bench_object(name: str, preset: str, workdir: Path, seed: int) -> dict:
    data = workdir / name
    write_dataset(name, data, n_train=40, n_test=8, size=128, seed=seed)
    out = workdir / f"{name}.glb"
    t0 = time.perf_counter()
    summary = run_reconstruct(data, out, reconstruct_config(preset, {"seed": seed}), device="cpu", preset=preset,
                              callback=log_progress)
    seconds = time.perf_counter() - t0
    verts, faces, uvs, tex = read_mesh(out)
    gt_v, gt_f = ground_truth_mesh(name, resolution=256)
    ch = chamfer_meshes((verts, faces), (gt_v, gt_f), n=200_000)
    test = load_posed_images(data, split="test")
    pred = render_textured(TexturedMesh(verts, faces, uvs, None, tex), test.cameras)
    a = test.images[..., 3:]
    ref = test.images[..., :3] * a + (1 - a)
    psnrs = [psnr(pred[i].numpy(), ref[i].numpy()) for i in range(len(test.images))]
    return {"object": name, "preset": preset, "seconds": seconds, "stage_seconds": summary["seconds"],
            "faces": summary["faces"], "chamfer_pct": 100 * ch["symmetric"],
            "pred_to_true_pct": 100 * ch["a_to_b_mean"], "true_to_pred_pct": 100 * ch["b_to_a_mean"],
            "psnr_db": float(np.mean(psnrs)), "psnr_min_db": float(np.min(psnrs))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", nargs="+", default=["snowman", "mug", "box_ball"])
    parser.add_argument("--preset", default="draft")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep datasets and GLBs here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.out or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.objects:
            row = bench_object(name, args.preset, workdir, args.seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| object | preset | time (s) | faces | Chamfer % diag (sym) | pred->true % | true->pred % | PSNR dB (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['object']} | {r['preset']} | {r['seconds']:.0f} | {r['faces']} | {r['chamfer_pct']:.3f} | "
              f"{r['pred_to_true_pct']:.3f} | {r['true_to_pred_pct']:.3f} | "
              f"{r['psnr_db']:.2f} ({r['psnr_min_db']:.2f}) |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
