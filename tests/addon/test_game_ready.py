"""Game-ready results in a real bpy: a result with a face budget carries a normal map that Blender wires into a Normal
Map node, in the tangent frames Blender itself computes (MikkTSpace), and levels of detail land as NAME_LOD0.. in a
collection of their own."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from test_operators import COMMON, _run

from dreamsmith.core.finish.bake import BakeConfig
from dreamsmith.core.finish.levels import bake_levels
from dreamsmith.core.meshio import read_mesh, write_glb
from dreamsmith.eval.synth_objects import ground_truth_mesh

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

IMPORT = COMMON + r"""
import numpy as np
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon.scene_io import import_result
obj = import_result(ARGS["glb"], name="ball", props={"prompt": "a ball"})
REPORT["names"] = sorted(o.name for o in bpy.data.objects)
REPORT["collection"] = [c.name for c in obj.users_collection]
REPORT["hidden"] = {o.name: o.hide_get() for o in bpy.data.objects}
REPORT["props"] = [o.get("dreamsmith_prompt") for o in bpy.data.objects]
nodes = obj.material_slots[0].material.node_tree.nodes
normal = [n for n in nodes if n.type == "NORMAL_MAP"]
REPORT["normal_node"] = bool(normal) and normal[0].inputs["Color"].is_linked
image = normal[0].inputs["Color"].links[0].from_node.image if normal else None
REPORT["normal_image_packed"] = image is not None and image.packed_file is not None
mesh = obj.data
mesh.calc_tangents(uvmap=mesh.uv_layers[0].name)
ours = {}  # by position and UV: a vertex on a UV seam is two vertices with their own tangents
data = json.load(open(ARGS["data"]))
for p, uv, t in zip(data["points"], data["uvs"], data["tangents"]):
    ours[tuple(np.round(p, 4)) + (round(uv[0], 4), round(1.0 - uv[1], 4))] = t
uv_layer = mesh.uv_layers[0].data
angles, signs = [], []
for loop in mesh.loops:
    key = tuple(np.round(np.array(mesh.vertices[loop.vertex_index].co, dtype=np.float64), 4))
    uv = uv_layer[loop.index].uv
    key += (round(float(uv[0]), 4), round(float(uv[1]), 4))
    if key not in ours:
        continue
    t = ours[key]
    angles.append(float(np.degrees(np.arccos(np.clip(np.dot(np.array(loop.tangent), t[:3]), -1, 1)))))
    signs.append(loop.bitangent_sign == t[3])
REPORT["matched"] = len(angles) / len(mesh.loops)
REPORT["angle_median"] = float(np.median(angles))
REPORT["angle_p90"] = float(np.percentile(angles, 90))
REPORT["signs"] = float(np.mean(signs))
print("REPORT " + json.dumps(REPORT))
"""


def test_a_budgeted_result_imports_with_its_normal_map_in_blenders_own_tangent_frames(tmp_path):
    v, f = ground_truth_mesh("box_ball", resolution=60)[:2]

    def colour(points: torch.Tensor) -> torch.Tensor:
        return (points * 0.3 + 0.5).clamp(0, 1)

    mesh = bake_levels(np.asarray(v, np.float32), f, colour, BakeConfig(texture_size=256, faces=1500, lods=2), "ball")
    assert len(mesh.faces) <= 1500 and len(mesh.lods) == 1 and len(mesh.lods[0].faces) <= 375
    assert mesh.normal_map is not None and mesh.lods[0].normal_map is not None
    glb = write_glb(mesh, tmp_path / "ball.glb")
    verts, faces, uvs, _ = read_mesh(glb)
    assert len(faces) == len(mesh.faces) + len(mesh.lods[0].faces)  # both levels are in the file
    data = tmp_path / "ours.json"
    data.write_text(json.dumps({"points": np.asarray(mesh.verts).tolist(), "uvs": np.asarray(mesh.uvs).tolist(),
                                "tangents": np.asarray(mesh.tangents).tolist()}))
    rep = _run(IMPORT, {"glb": str(glb), "data": str(data)})
    assert rep["names"] == ["ball_LOD0", "ball_LOD1"] and rep["collection"] == ["ball"]
    assert rep["hidden"] == {"ball_LOD0": False, "ball_LOD1": True} and rep["props"] == ["a ball", "a ball"]
    assert rep["normal_node"] and rep["normal_image_packed"]
    assert rep["matched"] > 0.95, rep
    # Blender's MikkTSpace and ours agree: the normal map reads the same in Blender as it was baked.
    assert rep["angle_median"] < 1.0 and rep["angle_p90"] < 5.0 and rep["signs"] > 0.99, json.dumps(rep)[:500]


QUADS = COMMON + r"""
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("dreamsmith", default_set=True)
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.device = "cpu"
from dreamsmith.addon.scene_io import import_result
ball = import_result(ARGS["glb"], name="ball")
before = counts()
REPORT["quads"] = str(bpy.ops.dreamsmith.remesh_quads(target_faces=800))
quads = bpy.data.objects.get("ball Quads")
REPORT["delta"] = [a - b for a, b in zip(counts(), before)]
REPORT["quad_faces"] = [len(quads.data.polygons), sum(len(p.vertices) == 4 for p in quads.data.polygons)]
nodes = quads.material_slots[0].material.node_tree.nodes
REPORT["normal_map"] = any(n.type == "NORMAL_MAP" and n.inputs["Color"].is_linked for n in nodes)
REPORT["images_packed"] = all(n.image.packed_file is not None for n in nodes if n.type == "TEX_IMAGE")
REPORT["original_hidden"] = [ball.hide_get(), ball.hide_render, ball.name in bpy.data.objects]
# refused, and nothing made: an open mesh (a grid) with a texture, and a closed mesh without one
bpy.ops.mesh.primitive_grid_add()
grid = bpy.context.active_object
grid.data.materials.append(ball.material_slots[0].material)
before = counts()
REPORT["open"] = call(bpy.ops.dreamsmith.remesh_quads)
bpy.ops.mesh.primitive_cube_add()
REPORT["untextured"] = call(bpy.ops.dreamsmith.remesh_quads)
REPORT["unchanged"] = counts()[1:] == [before[1] + 1] + before[2:]  # the cube's mesh only
print("REPORT " + json.dumps(REPORT))
"""


def test_remesh_to_quads_carries_the_texture_over_and_refuses_what_quadriflow_cannot_take(tmp_path):
    from dreamsmith.core.geometry.metrics import sample_surface  # noqa: F401  (the engine is importable here)

    v, f = ground_truth_mesh("box_ball", resolution=48)[:2]

    def colour(points: torch.Tensor) -> torch.Tensor:
        return (points * 0.3 + 0.5).clamp(0, 1)

    mesh = bake_levels(np.asarray(v, np.float32), f, colour, BakeConfig(texture_size=128), "ball")
    glb = write_glb(mesh, tmp_path / "ball.glb")
    script = QUADS.replace("def generate(**kw):", "def call(op, **kw):\n    try:\n        return str(op(**kw))\n"
                           "    except RuntimeError as exc:\n        return 'RuntimeError: ' + str(exc)\n\n"
                           "def generate(**kw):")
    rep = _run(script, {"glb": str(glb)}, timeout=600)
    assert rep["quads"] == "{'FINISHED'}", rep["quads"]
    assert rep["delta"][:2] == [1, 1]  # one new object and its mesh; the original kept
    faces, quads = rep["quad_faces"]
    assert 400 <= faces <= 1600 and quads / faces > 0.9
    assert rep["normal_map"] and rep["images_packed"] and rep["original_hidden"] == [True, True, True]
    assert "closed surface" in rep["open"] and "Fill Holes" in rep["open"]
    assert "no image texture" in rep["untextured"] and rep["unchanged"]
