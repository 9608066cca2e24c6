"""Time the bake's unwrap (xatlas) of a dense closed mesh in one piece and in pieces, side by side.

    python scripts/bench_unwrap.py [--resolution 170] [--texture 1024] [--repeats 1] [--pieces 0 4000 2000]

The mesh is the box-and-ball of ``synth_objects`` marched at ``--resolution`` (170: about 100k faces, a standard
result's size). For each ``BakeConfig.unwrap_piece_faces`` it prints seconds (the best of ``--repeats``), the
pieces, the vertices after the unwrap per vertex before (seams duplicate vertices: more is more seam), the share
of the atlas that the charts cover, the time against the first row (one piece by default), and how well the atlas
holds a smooth colour field baked into it (the texture sampled at 100k random surface points against the field:
mean, 99th percentile and largest error, in 8-bit levels).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dreamsmith.core.finish.bake import BakeConfig, _pieces, bake_texture, sample_texture, unwrap
from dreamsmith.eval.synth_objects import ground_truth_mesh

PIECE_FACES = (0, 4000, 2000)


def uv_coverage(uvs: np.ndarray, faces: np.ndarray) -> float:
    """The summed area of the UV triangles (the atlas is the unit square)."""
    ab, ac = uvs[faces[:, 1]] - uvs[faces[:, 0]], uvs[faces[:, 2]] - uvs[faces[:, 0]]
    return float(0.5 * np.abs(ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]).sum())


def field(points: torch.Tensor) -> torch.Tensor:
    """A smooth colour field in [0.2, 0.8] that differs along every axis."""
    p = points.float()
    return 0.5 + 0.3 * torch.sin(torch.stack([4.0 * p[:, 0] + 1.0, 5.0 * p[:, 1], 4.5 * p[:, 2] - 0.5], dim=-1))


def bake_error(verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray, size: int) -> np.ndarray:
    """Seconds of the texture bake, then the mean, 99th percentile and largest error (8-bit levels) of the field
    baked and sampled back."""
    t0 = time.perf_counter()
    texture, _ = bake_texture(verts, faces, uvs, field, size)
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    fi = rng.integers(0, len(faces), 100_000)
    bary = rng.dirichlet([1.0, 1.0, 1.0], len(fi))[:, :, None]
    points, uv = (verts[faces[fi]] * bary).sum(1), (uvs[faces[fi]] * bary).sum(1)
    err = np.abs(sample_texture(texture, uv) - field(torch.from_numpy(points)).numpy()) * 255
    return np.array([seconds, err.mean(), np.percentile(err, 99), err.max()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=170)
    parser.add_argument("--texture", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pieces", type=int, nargs="+", default=list(PIECE_FACES),
                        help="unwrap_piece_faces values to time, the first being the baseline (0: one piece)")
    args = parser.parse_args()
    v, f = ground_truth_mesh("box_ball", resolution=args.resolution)[:2]
    v, f = np.asarray(v, np.float32), np.asarray(f, np.int64)
    print(f"{len(f)} faces, {len(v)} vertices, atlas {args.texture}\n\n"
          "| unwrap_piece_faces | pieces | unwrap s | vertices after / before | atlas covered | time / first row | "
          "texture bake s | bake error mean / p99 / max |\n|---|---|---|---|---|---|---|---|")
    base = None
    for piece in args.pieces:
        cfg = BakeConfig(texture_size=args.texture, unwrap_piece_faces=piece, unwrap_split_faces=0,
                         max_faces_for_unwrap=len(f))
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            nv, nf, uvs, _ = unwrap(v, f, cfg)
            best = min(best, time.perf_counter() - t0)
        base = base or best
        err = bake_error(nv, nf, uvs, args.texture)
        print(f"| {piece or 'one piece'} | {len(_pieces(v, f, piece))} | {best:.1f} | {len(nv) / len(v):.3f} | "
              f"{uv_coverage(uvs, nf):.2f} | {best / base:.2f} | {err[0]:.1f} | "
              f"{err[1]:.2f} / {err[2]:.2f} / {err[3]:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
