"""Inputs of the batch tests: tiny configs for every job kind, a mesh, pictures with and without an object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TOY = Path(__file__).resolve().parents[2] / "assets" / "demo_prior"

GENERATE = {"coarse": {"steps": 3, "occupancy": {"resolution": 32}, "volume": {"n_samples_per_ray": 64}},
            "mesh": {"steps": 2, "render_size": 64, "dmtet": {"resolution": 24}}, "bake": {"texture_size": 64},
            "coarse_sds": {"render_size": 32}}
TINY = {
    "generate": GENERATE,
    "image": dict(GENERATE, image={"inversion": {"steps": 2, "batch": 1}, "caption": {"batch": 4}, "score_size": 32}),
    "retexture": {"mesh": {"steps": 2, "render_size": 64}, "bake": {"texture_size": 64}},
    "edit": dict(GENERATE, prior_resolution=24),
}


def write_inputs(root: Path) -> dict[str, Path]:
    """A mesh (a UV-unwrapped box-and-ball, off-centre), a picture of a yellow disc (alpha) and one of nothing."""
    from dreamsmith.core.finish.bake import unwrap
    from dreamsmith.core.meshio import TexturedMesh, write_glb
    from dreamsmith.eval.synth_objects import ground_truth_mesh

    root.mkdir(parents=True, exist_ok=True)
    v, f = ground_truth_mesh("box_ball", resolution=20)[:2]
    v = (v * 2.0 + np.array([1.0, 0.0, 0.5])).astype(np.float32)
    v2, f2, uv, _ = unwrap(v, f)
    mesh = write_glb(TexturedMesh(v2, f2, uv, None, np.full((16, 16, 3), 200, np.uint8)), root / "prop.glb")
    picture = np.zeros((96, 96, 4), np.uint8)
    yy, xx = np.mgrid[:96, :96]
    picture[(yy - 48) ** 2 + (xx - 46) ** 2 < 28 ** 2] = (230, 200, 20, 255)
    Image.fromarray(picture).save(root / "disc.png")
    Image.fromarray(np.zeros((64, 64, 4), np.uint8)).save(root / "nothing.png")
    return {"mesh": mesh, "picture": root / "disc.png", "empty": root / "nothing.png"}


def job(command: str, **fields) -> dict:
    """One worker job (a JSON line) with the toy prior and the tiny config of its kind."""
    kind = "image" if command == "generate" and "image" in fields else command
    return dict(command=command, model=str(TOY), config=TINY[kind], **fields)


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
    return path
