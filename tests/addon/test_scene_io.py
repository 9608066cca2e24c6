"""The add-on's scene import, in a real bpy (run in a subprocess so that bpy stays out of the test process)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dreamsmith.core.meshio import TexturedMesh, write_glb

REPO = Path(__file__).resolve().parents[2]

CHECK = r"""
import json, sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
obj = bpy.data.objects["textured box"]
mat = obj.material_slots[0].material
imgs = [n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"]
print("REPORT " + json.dumps({
    "objects": len(bpy.data.objects), "uv": [l.name for l in obj.data.uv_layers],
    "packed": [i.packed_file is not None for i in imgs], "size": list(imgs[0].size) if imgs else None,
    "smooth": all(p.use_smooth for p in obj.data.polygons), "source": obj.get("dreamsmith_source"),
    "active": bpy.context.view_layer.objects.active.name if bpy.context.view_layer.objects.active else None}))
"""


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")
def test_glb_lands_in_a_blend_with_packed_texture(tmp_path):
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]], np.int64)
    uvs = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9], [0.5, 0.5]], np.float32)
    tex = np.zeros((16, 24, 3), np.uint8)
    tex[..., 0] = 200
    glb = write_glb(TexturedMesh(verts, faces, uvs, None, tex, "box"), tmp_path / "textured box.glb")
    blend = tmp_path / "out" / "scene.blend"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "glb_to_blend.py"), str(glb), str(blend)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    glb.unlink()  # the .blend must not depend on the GLB: its image is packed
    proc = subprocess.run([sys.executable, "-c", CHECK, str(blend)], capture_output=True, text=True, timeout=180)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    rep = json.loads(line[-1][7:])
    assert rep["objects"] == 1 and len(rep["uv"]) == 1
    assert rep["packed"] == [True] and rep["size"] == [24, 16]
    assert rep["smooth"] and rep["source"].endswith("textured box.glb") and rep["active"] == "textured box"
    assert sorted(p.name for p in blend.parent.iterdir()) == ["scene.blend"]
