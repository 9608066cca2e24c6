"""Draft results do not move when the code is reorganised: same seed on the CPU, same result.

Each command runs the draft preset on the toy prior with fewer steps (the suite's time) and its result is compared
with ``tests/assets/golden_draft.json`` in two ways:

* **exactly**, on a machine whose fingerprint (architecture, CPU model, torch's CPU kernels, torch version, torch's
  threads: ``make test`` runs one a test worker) has a
  record: the SHA-256 of the vertices, faces, UVs and texture must match;
* **within tolerances** everywhere else (another CPU rounds differently, and score distillation carries the
  difference on): a signature of the result (512 surface points with the texture's colour at each, face count,
  surface area, UV area) must stay within the thresholds in :data:`TOLERANCE` of the recorded one. Those thresholds
  sit well above what another CPU changes and below what a one-line change of the pipeline does (measured: the
  experiments log in ``docs/``); :func:`test_the_signature_check_fails_on_what_a_regression_changes` keeps them
  honest.

Recording replaces, it never appends: ``DREAMSMITH_RECORD_GOLDEN=1 pytest tests/core/test_golden.py`` after a
deliberate change of results makes this machine's result the command's only record (exact digests and signature);
``DREAMSMITH_RECORD_GOLDEN=machine`` adds (or replaces) this machine's exact digests, only when the result passes
the signature check first.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from dreamsmith.core.app.cli import main
from dreamsmith.core.geometry.metrics import closest_points_on_mesh, sample_surface
from dreamsmith.core.meshio import TexturedMesh, read_mesh, write_glb

ASSETS = Path(__file__).resolve().parents[1] / "assets"
RECORD = ASSETS / "golden_draft.json"
TOY = ASSETS.parent.parent / "assets" / "demo_prior"
SMALL = {
    # a strong blob: the draft's weak one needs its full schedule to grow an object
    "generate": {"coarse": {"steps": 30, "field": {"blob_density": 5.0, "blob_radius": 0.4}}, "mesh": {"steps": 6}},
    "edit": {"coarse": {"steps": 20}, "mesh": {"steps": 4}, "prior_resolution": 24},
    "retexture": {"mesh": {"steps": 8}},
    "reconstruct": {"coarse": {"steps": 40}, "coarse_reference": {"rays_per_step": 1024},
                    "mesh": {"steps": 6, "render_size": 32}, "bake": {"texture_size": 128}},
}
#: The signature check's thresholds, scale-free (distances as fractions of the recorded bounding-box diagonal,
#: colours as fractions of full scale): ``surface``: mean distance from the recorded surface points to the result's
#: surface; ``spread``: how much farther the result's vertices lie from the recorded points than the recorded
#: mesh's own did; ``color``: mean colour difference between the recorded points and the result's texture at its
#: nearest surface points; ``faces`` and ``area``: relative change of the face count and the surface area;
#: ``uv_area``: change of the area the faces cover in UV space (fraction of the unit square).
TOLERANCE = {"surface": 0.004, "spread": 0.004, "color": 0.015, "faces": 0.05, "area": 0.03, "uv_area": 0.03}
N_POINTS = 512


def _digest(mesh) -> dict[str, str]:
    verts, faces, uvs, tex = mesh
    arrays = {"verts": verts, "faces": faces.astype(np.int64), "uvs": uvs, "texture": tex}
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:32] for k, v in arrays.items()}


def _colors(mesh, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """The texture's colour ``[N, 3]`` (0-1) at the surface points ``(tri, bary)`` of ``mesh``."""
    _, faces, uvs, tex = mesh
    uv = (bary[:, :, None] * np.asarray(uvs, np.float64)[np.asarray(faces)[tri]]).sum(1)
    h, w = tex.shape[:2]  # glTF: (0, 0) is the image's top-left corner
    rows, cols = np.clip((uv[:, 1] * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    return np.asarray(tex)[rows, cols, :3].astype(np.float64) / 255.0


def _areas(mesh) -> tuple[float, float]:
    verts, faces, uvs, _ = (np.asarray(a) for a in mesh)
    v, t = verts.astype(np.float64)[faces], uvs.astype(np.float64)[faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum()
    return float(area), float(0.5 * np.abs(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])).sum())


def signature(mesh, n: int = N_POINTS) -> dict:
    """What the tolerance check keeps of a result: ``n`` area-weighted surface points (fixed seed) with the
    texture's colour there, the face count, the surface and UV areas, and the mean distance from the mesh's own
    vertices to those points (the baseline of ``spread``)."""
    verts, faces = np.asarray(mesh[0], np.float64), np.asarray(mesh[1])
    points = sample_surface(verts, faces, n, seed=0)
    _, tri, bary = closest_points_on_mesh(points, verts, faces)
    area, uv_area = _areas(mesh)
    return {"points": np.round(points, 5).tolist(), "colors": np.round(_colors(mesh, tri, bary), 4).tolist(),
            "faces": int(len(faces)), "area": area, "uv_area": uv_area,
            "spread": float(cKDTree(points).query(verts)[0].mean())}


def signature_changes(mesh, ref: dict) -> dict[str, float]:
    """How far the result ``mesh`` is from the recorded signature ``ref``, in the units of :data:`TOLERANCE`.
    Every measure is a continuous function of the result's geometry (no new random samples of it)."""
    verts, faces = np.asarray(mesh[0], np.float64), np.asarray(mesh[1])
    q = np.asarray(ref["points"])
    diag = float(np.linalg.norm(q.max(0) - q.min(0)))
    dist, tri, bary = closest_points_on_mesh(q, verts, faces)
    spread = float(cKDTree(q).query(verts)[0].mean())
    area, uv_area = _areas(mesh)
    return {"surface": float(dist.mean()) / diag, "spread": max(0.0, spread - ref["spread"]) / diag,
            "color": float(np.abs(_colors(mesh, tri, bary) - np.asarray(ref["colors"])).mean()),
            "faces": abs(len(faces) - ref["faces"]) / ref["faces"], "area": abs(area - ref["area"]) / ref["area"],
            "uv_area": abs(uv_area - ref["uv_area"])}


def signature_problems(mesh, ref: dict) -> list[str]:
    """The measures over their threshold (empty: within tolerances)."""
    return [f"{k} {v:.4f} > {TOLERANCE[k]}" for k, v in signature_changes(mesh, ref).items() if not v <= TOLERANCE[k]]


def machine() -> str:
    """This machine's fingerprint: the exact records are kept per fingerprint."""
    import torch

    model = platform.processor() or ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")) or model
    except (OSError, StopIteration):
        pass
    return (f"{platform.machine()} {model} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__} "
            f"threads {torch.get_num_threads()}")  # a reduction split over more threads rounds differently


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from dreamsmith.core.finish.bake import unwrap
    from dreamsmith.eval.synth_objects import ground_truth_mesh, write_dataset

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


@pytest.mark.parametrize("command", ["generate", "retexture", "edit", "reconstruct"])
def test_draft_results_are_unchanged(inputs, command):
    result = read_mesh(_run(command, *inputs))
    got, here = _digest(result), machine()
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    entry = record.get(command, {"exact": {}, "signature": None})
    mode = os.environ.get("DREAMSMITH_RECORD_GOLDEN", "")
    if mode == "1":  # results changed on purpose: this machine's result is the only record
        entry = {"exact": {here: got}, "signature": signature(result)}
    assert entry["signature"] is not None, f"no record for {command}; record with DREAMSMITH_RECORD_GOLDEN=1"
    problems = signature_problems(result, entry["signature"])
    assert not problems, f"{command}: the result moved beyond the tolerances: {', '.join(problems)}"
    if mode == "machine":
        entry["exact"][here] = got
    if mode:
        record[command] = entry
        RECORD.write_text(json.dumps(record, sort_keys=True) + "\n")
    if here in entry["exact"]:
        assert got == entry["exact"][here], f"{command}: the result's bytes changed on this machine ({here})"


def _box(n: int = 12) -> tuple:
    """A textured unit box: verts, faces, uvs (one triangle's corners per face) and a two-colour texture."""
    from dreamsmith.core.finish.bake import unwrap
    from dreamsmith.eval.synth_objects import ground_truth_mesh

    v, f = ground_truth_mesh("box_ball", resolution=n)[:2]
    v2, f2, uv, _ = unwrap(v.astype(np.float32), f)
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:, :32] = (200, 40, 40)
    tex[:, 32:] = (40, 40, 200)
    return v2, f2, uv, tex


def test_the_signature_check_fails_on_what_a_regression_changes():
    v, f, uv, tex = _box()
    ref = signature((v, f, uv, tex))
    rng = np.random.default_rng(1)
    jitter = (v + rng.normal(0, 2e-4, v.shape).astype(np.float32), f, uv, tex)  # another CPU's rounding, magnified
    assert signature_problems(jitter, ref) == []
    assert signature_problems((v, f, uv, tex), ref) == []
    moved = (v * np.float32(1.03), f, uv, tex)  # 3 % larger
    assert {"surface", "area"} <= {p.split()[0] for p in signature_problems(moved, ref)}
    grown = (np.concatenate([v, v + np.float32(0.5)]), np.concatenate([f, f + len(v)]), np.concatenate([uv, uv]),
             tex)  # a second copy beside it
    assert "spread" in {p.split()[0] for p in signature_problems(grown, ref)}
    tinted = (v, f, uv, np.clip(tex.astype(int) + 10, 0, 255).astype(np.uint8))  # +0.04 in every channel
    assert [p.split()[0] for p in signature_problems(tinted, ref)] == ["color"]
    fewer = (v, f[: len(f) * 9 // 10], uv, tex)  # a tenth of the faces gone
    assert "faces" in {p.split()[0] for p in signature_problems(fewer, ref)}
    squeezed = (v, f, uv * np.float32(0.9), tex)  # the UV layout shrunk
    assert "uv_area" in {p.split()[0] for p in signature_problems(squeezed, ref)}
