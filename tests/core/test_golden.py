"""Draft results do not move when the code is reorganised: same seed on the CPU, same geometry, UVs and texture
bytes as recorded in ``tests/assets/golden_draft.json``.

Each command runs the draft preset on the toy prior with fewer steps (the suite's time), and the SHA-256 of the
result's vertices, faces, UVs and texture is compared with the record. A deliberate change of results re-records
them with ``DREAMSMITH_RECORD_GOLDEN=1 pytest tests/core/test_golden.py`` (after clearing the command's entries) and
says why in its commit.

The same code gives other bytes on another CPU (other SIMD kernels round differently, and score distillation
carries the difference on): each command keeps one record per machine it was recorded on, and a result must match
one of them. A new kind of machine adds its own with the same command (the code unchanged since the last record).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from dreamsmith.core.cli import main
from dreamsmith.core.meshio import TexturedMesh, read_mesh, write_glb

ASSETS = Path(__file__).resolve().parents[1] / "assets"
RECORD = ASSETS / "golden_draft.json"
TOY = ASSETS.parent.parent / "assets" / "demo_prior"
SMALL = {
    # a strong blob: the draft's weak one needs its full schedule to grow an object
    "generate": {"coarse": {"steps": 30, "field": {"blob_density": 5.0, "blob_radius": 0.4}}, "mesh": {"steps": 6}},
    "edit": {"coarse": {"steps": 20}, "mesh": {"steps": 4}, "prior_resolution": 24},
    "retexture": {"stage": {"steps": 8}},
    "reconstruct": {"coarse": {"steps": 40, "rays_per_step": 1024}, "mesh": {"steps": 6, "render_size": 32},
                    "bake": {"texture_size": 128}},
}


def _digest(path: Path) -> dict[str, str]:
    verts, faces, uvs, tex = read_mesh(path)
    arrays = {"verts": verts, "faces": faces.astype(np.int64), "uvs": uvs, "texture": tex}
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:32] for k, v in arrays.items()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from dreamsmith.core.bake import unwrap
    from dreamsmith.scripts.synth_objects import ground_truth_mesh, write_dataset

    root = tmp_path_factory.mktemp("golden")
    v, f = ground_truth_mesh("box_ball", resolution=24)[:2]
    v = (v * 2.0 + np.array([1.0, 2.0, -0.5])).astype(np.float32)
    v2, f2, uv, _ = unwrap(v, f)
    mesh = write_glb(TexturedMesh(v2, f2, uv, None, np.full((16, 16, 3), 180, np.uint8)), root / "input.glb")
    images = write_dataset("box_ball", root / "views", n_train=8, n_test=1, size=32, seed=2)
    return root, mesh, images


def _run(command: str, root: Path, mesh: Path, images: Path) -> Path:
    cfg = root / f"{command}.json"
    cfg.write_text(json.dumps(SMALL[command]))
    out = root / f"{command}.glb"
    args = [command, "--preset", "draft", "--seed", "7", "--config", str(cfg), "--out", str(out), "--device", "cpu",
            "--quiet"]
    if command == "reconstruct":
        args += ["--images", str(images)]
    else:
        args += ["--prompt", "a blue cone", "--model", str(TOY)]
    if command in ("edit", "retexture"):
        args += ["--mesh", str(mesh)]
    assert main(args) == 0
    return out


def _machine() -> str:
    import platform

    import torch

    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"


@pytest.mark.parametrize("command", ["generate", "retexture", "edit", "reconstruct"])
def test_draft_results_are_unchanged(inputs, command):
    got = _digest(_run(command, *inputs))
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    known = record.get(command, [])
    same = [r for r in known if {k: r.get(k) for k in got} == got]
    if os.environ.get("DREAMSMITH_RECORD_GOLDEN") == "1" and not same:
        record[command] = known + [got | {"machine": _machine()}]
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        same = [got]
    assert known or same, f"no record for {command}; record with DREAMSMITH_RECORD_GOLDEN=1"
    assert same, (f"{command}: the result matches none of the {len(known)} recorded machines' results "
                  f"({_machine()} here); a deliberate change re-records (module docstring)")
