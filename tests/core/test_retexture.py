"""Re-texture and edit with the offline toy prior (the real diffusers path, weights in tests/assets):
re-texturing keeps geometry and UVs bit for bit and follows the prompt's colour; a mesh without usable UVs
gets a new unwrap; editing a red sphere with "a blue cube" makes it blue and closer to a cube; bad
input exits 2 with nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dreamsmith.core.app.cli import main
from dreamsmith.core.finish.bake import unwrap
from dreamsmith.core.jobs.edit import mesh_sdf
from dreamsmith.core.jobs.retexture import UVCheckConfig, uv_problems
from dreamsmith.core.meshio import read_mesh, write_glb
from dreamsmith.eval.shapes import reference_primitive, shape_distance, source_mesh
from dreamsmith.eval.synth_objects import ground_truth_mesh
from dreamsmith.eval.toy_prior_data import COLOURS, shape_object

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "assets" / "demo_prior"

# Odd scale and offset: the engine must work in its own frame and hand back the input's.
SCALE, OFFSET = 3.0, np.array([5.0, -2.0, 1.0], dtype=np.float32)


def _primitive(shape: str, resolution: int = 40) -> tuple[np.ndarray, np.ndarray]:
    v, f = ground_truth_mesh(shape_object(shape), resolution=resolution)[:2]
    return (v * SCALE + OFFSET).astype(np.float32), f


def _dominant(texture: np.ndarray) -> str:
    px = texture[..., :3].reshape(-1, 3).astype(np.float64) / 255.0
    med = np.median(px[px.max(axis=1) > 0.05], axis=0)
    chroma = med / med.sum()
    refs = {k: np.asarray(c) / sum(c) for k, c in COLOURS.items()}
    return min(refs, key=lambda k: float(np.linalg.norm(chroma - refs[k])))


def _cli(*args: str) -> int:
    return main([*args, "--model", str(TOY), "--preset", "draft", "--device", "cpu", "--quiet"])


def test_retexture_keeps_geometry_and_uvs_bit_identical_and_follows_the_colour(tmp_path):
    src = tmp_path / "red_cube.glb"
    write_glb(source_mesh("cube"), src)
    out = tmp_path / "green.glb"
    assert _cli("retexture", "--mesh", str(src), "--prompt", "a green cube", "--out", str(out),
                "--preview", str(tmp_path / "green.png")) == 0
    v0, f0, uv0, t0 = read_mesh(src)
    v1, f1, uv1, t1 = read_mesh(out)
    np.testing.assert_array_equal(v1, v0)
    np.testing.assert_array_equal(f1, f0)
    np.testing.assert_array_equal(uv1, uv0)
    assert _dominant(t0) == "red" and _dominant(t1) == "green"
    assert (tmp_path / "green.png").is_file()


def test_retexture_of_a_mesh_without_uvs_adds_them(tmp_path):
    v, f = _primitive("sphere", resolution=24)
    src = tmp_path / "plain.obj"
    src.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in v) + "".join(f"f {a + 1} {b + 1} {c + 1}\n"
                                                                             for a, b, c in f))
    out = tmp_path / "blue.obj"
    assert _cli("retexture", "--mesh", str(src), "--prompt", "a blue sphere", "--out", str(out),
                "--config", str(_write_json(tmp_path, {"mesh": {"steps": 40}}))) == 0
    v0, _, uv0, _ = read_mesh(src)
    v1, f1, uv1, t1 = read_mesh(out)
    assert uv0 is None and uv1 is not None and uv1.shape == (len(v1), 2)
    # every output vertex is an input vertex, copied (seams duplicate some)
    rows = {tuple(r) for r in v0.tolist()}
    assert all(tuple(r) in rows for r in v1.tolist()) and len(f1) == len(f)
    assert _dominant(t1) == "blue"


def _write_json(tmp_path: Path, data: dict) -> Path:
    import json

    p = tmp_path / "over.json"
    p.write_text(json.dumps(data))
    return p


def test_uv_checks_accept_an_unwrap_and_name_what_is_wrong_otherwise():
    v, f = _primitive("cube", resolution=24)
    v2, f2, uv, _ = unwrap(v, f)
    cfg = UVCheckConfig()
    assert uv_problems(v2, f2, uv, cfg) == ""
    assert uv_problems(v2, f2, None, cfg) == "the mesh has no UV map"
    assert "0-1 square" in uv_problems(v2, f2, uv * 2.0, cfg)
    assert "no UV area" in uv_problems(v2, f2, np.zeros_like(uv), cfg)
    stacked = np.tile(np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], np.float32), (len(v2) // 3 + 1, 1))[:len(v2)]
    f3 = np.arange(len(v2) // 3 * 3).reshape(-1, 3)  # every face on the same UV triangle
    assert "overlaps" in uv_problems(v2, f3, stacked, cfg)


def test_mesh_sdf_signs_and_distances_on_a_sphere():
    v, f = ground_truth_mesh(shape_object("sphere"), resolution=48)[:2]  # radius 0.52
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.1, 0.0], [0.8, 0.0, 0.0], [0.0, 0.0, -1.0]])
    d = mesh_sdf(torch.from_numpy(v), torch.from_numpy(f.astype(np.int64)), pts)
    expected = pts.norm(dim=1) - 0.52
    assert (torch.sign(d) == torch.sign(expected)).all()
    assert torch.allclose(d, expected, atol=0.03)


@pytest.mark.parametrize("case", ["missing", "no_faces", "bad_suffix"])
def test_bad_meshes_exit_2_and_write_nothing(tmp_path, capsys, case):
    names = {"missing": "nope.glb", "no_faces": "points.obj", "bad_suffix": "m.stl"}
    src = tmp_path / names[case]
    if case == "no_faces":
        src.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    if case == "bad_suffix":
        src.write_text("solid x\nendsolid x\n")
    out = tmp_path / "out.glb"
    assert _cli("retexture", "--mesh", str(src), "--prompt", "a green cube", "--out", str(out)) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err) > 30


def test_edit_turns_a_red_sphere_blue_in_place(tmp_path):
    src = tmp_path / "red_sphere.glb"
    write_glb(source_mesh("sphere"), src)
    out = tmp_path / "edited.glb"
    assert _cli("edit", "--mesh", str(src), "--prompt", "a blue cube", "--out", str(out)) == 0
    before, after = read_mesh(src), read_mesh(out)
    assert _dominant(after[3]) == "blue"
    # Measurably closer to a cube: Chamfer % of the unit diagonal to a normalised cube, over turns about Z (the
    # prompt fixes no yaw). Run-to-run noise of this figure is ~0.3 (float summation order); the committed toy
    # prior (camera input) took the sphere from 6.41 to 2.61 in scripts/sweep_edits.py (seed 0, one thread).
    cube = reference_primitive("cube")
    d0 = shape_distance(before[0], before[1], cube, "cube")
    d1 = shape_distance(after[0], after[1], cube, "cube")
    assert d1 < 0.85 * d0, (d0, d1)
    # The geometry is new (the edit ran the coarse and mesh stages), not the input passed through.
    assert before[0].shape != after[0].shape or not np.allclose(before[0], after[0])
    # stays where it was, at its scale
    lo0, hi0 = before[0].min(0), before[0].max(0)
    lo1, hi1 = after[0].min(0), after[0].max(0)
    assert np.allclose((lo0 + hi0) / 2, (lo1 + hi1) / 2, atol=0.2 * SCALE)
    assert 0.6 < np.linalg.norm(hi1 - lo1) / np.linalg.norm(hi0 - lo0) < 1.5


