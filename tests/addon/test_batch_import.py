"""A finished engine batch brought into Blender (tools/batch_generate.py): ``--from DIR`` lays the done jobs out
on a grid with their prompts and seeds recorded, and ``--prompts ... --cluster local`` sends the prompts to a Ray
cluster through the engine's batch runner first. Each run is a separate process (bpy stays out of this one)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "assets" / "demo_prior"
SCRIPT = REPO / "tools" / "batch_generate.py"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

TINY = {"coarse": {"steps": 3, "occupancy": {"resolution": 32}, "volume": {"n_samples_per_ray": 64}},
        "mesh": {"steps": 2, "render_size": 64, "dmtet": {"resolution": 24}}, "bake": {"texture_size": 64},
        "coarse_sds": {"render_size": 32}}

LIST = r"""
import json, sys
import bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
objs = {o.name: {"location": [round(c, 3) for c in o.location], "type": o.type,
                 "props": {k: o[k] for k in o.keys() if k.startswith("dreamsmith_")},
                 "images": [n.image.packed_file is not None for s in o.material_slots if s.material
                            for n in s.material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]}
        for o in bpy.data.objects}
print("REPORT " + json.dumps(objs))
"""


def _blend_objects(blend: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", LIST, str(blend)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][7:])


def _script(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_a_finished_batch_is_imported_on_a_grid_with_its_prompts_and_seeds(tmp_path):
    from dreamsmith.core.app.batch.command import run_batch

    jobs = tmp_path / "jobs.jsonl"
    lines = [{"prompt": p, "seed": s, "model": str(TOY), "config": TINY}
             for p, s in (("a red cube", 1), ("a blue sphere", 2), ("a green cone", 3))]
    lines.insert(1, {"command": "edit", "mesh": "missing.glb", "prompt": "x"})
    jobs.write_text("".join(json.dumps(j) + "\n" for j in lines))
    counts = run_batch(jobs, tmp_path / "batch", show=False)
    assert counts["done"] == 3 and counts["failed"] == 1, counts

    blend = tmp_path / "scene.blend"
    proc = _script("--from", str(tmp_path / "batch"), "--out", str(blend), "--spacing", "4")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # the failed job is reported
    assert "FAILED 0001_edit_x: line 2: The mesh" in proc.stderr
    objs = _blend_objects(blend)
    assert {n: o["location"] for n, o in objs.items()} == {
        "a red cube": [0.0, 0.0, 0.0], "a blue sphere": [4.0, 0.0, 0.0], "a green cone": [0.0, -4.0, 0.0]}
    for name, seed in (("a red cube", 1), ("a blue sphere", 2), ("a green cone", 3)):
        props = objs[name]["props"]
        assert props["dreamsmith_prompt"] == name and props["dreamsmith_seed"] == seed, props
        assert props["dreamsmith_coarse_model"] == str(TOY) and props["dreamsmith_preset"] == "draft"
        assert objs[name]["type"] == "MESH" and objs[name]["images"] == [True]
    assert not list(tmp_path.glob(".*.tmp.blend"))

    bad = _script("--from", str(tmp_path), "--out", str(tmp_path / "x.blend"), timeout=120)
    assert bad.returncode == 2 and "no manifest.jsonl" in bad.stderr and not (tmp_path / "x.blend").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (the cluster extra)")
def test_prompt_file_mode_sends_its_prompts_to_a_ray_cluster(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n# skipped\na blue torus\n")
    blend = tmp_path / "cluster.blend"
    args = ("--prompts", str(prompts), "--out", str(blend), "--cluster", "local", "--model", str(TOY),
            "--config", json.dumps(TINY), "--python", sys.executable, "--device", "cpu", "--seed", "5")
    proc = _script(*args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = tmp_path / "cluster_batch"
    records = [json.loads(ln) for ln in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["done", "done"] and all(r["worker"] for r in records)
    objs = _blend_objects(blend)
    assert sorted(objs) == ["a blue torus", "a red cube"]
    assert all(o["props"]["dreamsmith_seed"] == 5 for o in objs.values())
    again = _script(*args)  # a rerun finds both done: nothing runs again, the scene is rebuilt from the folder
    assert again.returncode == 0 and '"skipped": 2' in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]
