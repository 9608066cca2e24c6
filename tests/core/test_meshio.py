"""GLB / OBJ export: round trips, the Khronos validator, Blender's own importers, atomic writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest

import dreamsmith
from dreamsmith.core.meshio import TexturedMesh, read_mesh, vertex_normals, write_glb, write_obj
from dreamsmith.core.meshio import mesh as meshio_mesh
from dreamsmith.core.meshio import write as meshio_write
from dreamsmith.core.runtime.errors import InputError

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "tests" / "assets"


def _box(lo=(0.5, -1.0, 0.25), size=(1.0, 2.0, 3.0)) -> TexturedMesh:
    """An axis-aligned box with distinct extents per axis; each side has its own 4 vertices (UV seams)."""
    lo, size = np.asarray(lo, np.float32), np.asarray(size, np.float32)
    corners = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], np.float32)  # bit k = axis k
    sides = [[0, 2, 6, 4], [1, 5, 7, 3], [0, 4, 5, 1], [2, 3, 7, 6], [0, 1, 3, 2], [4, 6, 7, 5]]
    verts, uvs, faces = [], [], []
    for s, quad in enumerate(sides):
        base = len(verts)
        verts += [lo + corners[q] * size for q in quad]
        u0, v0 = (s % 3) / 3, (s // 3) / 2
        uvs += [(u0 + 0.02, v0 + 0.02), (u0 + 0.31, v0 + 0.02), (u0 + 0.31, v0 + 0.48), (u0 + 0.02, v0 + 0.48)]
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    return TexturedMesh(np.array(verts, np.float32), np.array(faces, np.int64), np.array(uvs, np.float32), None,
                        texture, name="test_box")


def test_glb_round_trip_restores_positions_uvs_and_texture(tmp_path):
    mesh = _box()
    out = write_glb(mesh, tmp_path / "box.glb", extras={"prompt": "a box", "seed": 7})
    verts, faces, uvs, tex = read_mesh(out)
    np.testing.assert_allclose(verts, mesh.verts, atol=1e-6)
    np.testing.assert_array_equal(faces, mesh.faces)
    np.testing.assert_allclose(uvs, mesh.uvs, atol=1e-7)
    np.testing.assert_array_equal(tex, mesh.texture)

    gltf = gl.GLTF2.load(str(out))
    # Stored +Y up: the box's 3-unit Z extent must be glTF's Y extent.
    pos_acc = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    np.testing.assert_allclose(np.subtract(pos_acc.max, pos_acc.min), [1.0, 3.0, 2.0], atol=1e-6)
    assert gltf.asset.generator == f"Dreamsmith {dreamsmith.__version__}"  # the version, never "unknown"
    assert gltf.nodes[0].name == "test_box" and gltf.nodes[0].extras == {"prompt": "a box", "seed": 7}
    pbr = gltf.materials[0].pbrMetallicRoughness
    assert pbr.metallicFactor == 0.0 and pbr.baseColorTexture.index == 0
    assert gltf.images[0].mimeType == "image/png" and gltf.images[0].bufferView is not None
    assert gltf.samplers[0].wrapS == gltf.samplers[0].wrapT == 10497


def test_glb_passes_khronos_validator(tmp_path, gltf_validate):
    mesh = _box()
    rgba = np.dstack([mesh.texture, np.full(mesh.texture.shape[:2], 128, np.uint8)])
    from dreamsmith.core.meshio.tangents import vertex_tangents

    normals = vertex_normals(mesh.verts, mesh.faces)
    detailed = TexturedMesh(mesh.verts, mesh.faces, mesh.uvs, normals, mesh.texture, "lod",
                            normal_map=np.full((8, 8, 3), (128, 128, 255), np.uint8),
                            tangents=vertex_tangents(mesh.verts, mesh.faces, mesh.uvs, normals))
    detailed.lods = (TexturedMesh(mesh.verts, mesh.faces, mesh.uvs, None, mesh.texture, "lod1",
                                  normal_map=detailed.normal_map),)
    paths = [write_glb(mesh, tmp_path / "rgb.glb", extras={"prompt": "x"}),
             write_glb(TexturedMesh(mesh.verts, mesh.faces, mesh.uvs, None, rgba, "rgba"), tmp_path / "rgba.glb"),
             write_glb(detailed, tmp_path / "normal_map_and_lods.glb")]  # normalTexture, TANGENT, two meshes
    for path in paths:
        report = gltf_validate(path)
        issues = report["issues"]
        assert issues["numErrors"] == 0, issues["messages"]
        assert issues["numWarnings"] == 0, issues["messages"]
        assert report["info"]["hasTextures"] and report["info"]["totalTriangleCount"] in (12, 24)


def test_obj_writes_relative_material_and_round_trips(tmp_path):
    mesh = _box()
    obj, mtl, png = write_obj(mesh, tmp_path / "sub" / "box.obj")
    assert obj.is_file() and mtl.is_file() and png.is_file()
    assert f"mtllib {mtl.name}" in obj.read_text()
    assert f"map_Kd {png.name}" in mtl.read_text() and str(tmp_path) not in mtl.read_text()
    # Still resolves after moving the three files elsewhere (relative paths).
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in (obj, mtl, png):
        shutil.move(p, moved / p.name)
    verts, faces, uvs, tex = read_mesh(moved / "box.obj")
    np.testing.assert_allclose(verts, mesh.verts, atol=1e-6)
    np.testing.assert_array_equal(faces, mesh.faces)
    np.testing.assert_allclose(uvs, mesh.uvs, atol=1e-6)
    np.testing.assert_array_equal(tex, mesh.texture)


@pytest.fixture(scope="module")
def blender_reports(tmp_path_factory, blender_import):
    """Blender's glTF and OBJ importers, run once in a subprocess on a GLB and an OBJ of the test box."""
    d = tmp_path_factory.mktemp("blender")
    mesh = _box()
    glb = write_glb(mesh, d / "box.glb", extras={"prompt": "a box", "seed": 7})
    obj, _, _ = write_obj(mesh, d / "box.obj")
    return mesh, blender_import(glb, obj)


@pytest.mark.parametrize("which", [0, 1], ids=["glb", "obj"])
def test_blender_import_lands_z_up_with_texture(blender_reports, which):
    mesh, reports = blender_reports
    rep = reports[which]
    assert rep["mesh_objects"] == 1 and rep["faces"] == 12
    assert len(rep["uv_layers"]) == 1
    assert rep["base_color_image_linked"], "the material's Base Color is not fed by the texture"
    # The world-space box in Blender equals our Z-up input box: proves the axis conversion.
    np.testing.assert_allclose(rep["bbox_min"], mesh.verts.min(0), atol=1e-5)
    np.testing.assert_allclose(rep["bbox_max"], mesh.verts.max(0), atol=1e-5)
    if which == 0:
        assert rep["props"].get("prompt") == "a box" and rep["props"].get("seed") == 7


def _dir_listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def test_failed_png_encoding_leaves_nothing(tmp_path, monkeypatch):
    def broken(_texture):
        raise OSError("simulated PNG encoder failure")

    monkeypatch.setattr(meshio_write, "_encode_png", broken)
    with pytest.raises(OSError, match="simulated"):
        write_glb(_box(), tmp_path / "out.glb")
    with pytest.raises(OSError, match="simulated"):
        write_obj(_box(), tmp_path / "out.obj")
    assert _dir_listing(tmp_path) == []


def test_failure_mid_write_removes_temp_and_partial_files(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the PNG is already in place when the MTL rename fails
            raise OSError("simulated disk failure")
        real_replace(src, dst)

    monkeypatch.setattr(meshio_mesh.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated"):
        write_obj(_box(), tmp_path / "out.obj")
    assert _dir_listing(tmp_path) == []

    def failing_write(self, data):
        raise OSError("simulated disk full")

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_glb(_box(), tmp_path / "out.glb")
    assert _dir_listing(tmp_path) == []


def test_read_foreign_glb_applies_node_transforms(tmp_path):
    """A GLB from another tool: two nodes sharing one mesh, uint16 indices, TRS and matrix transforms, no UVs."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    idx = np.array([0, 1, 2], np.uint16)
    blob = pos.tobytes() + idx.tobytes() + b"\0\0"
    quarter_turn_y = [0.0, np.sqrt(0.5), 0.0, np.sqrt(0.5)]  # +90 deg about glTF's Y (up)
    matrix = np.eye(4)
    matrix[:3, 3] = (0.0, 5.0, 0.0)
    gltf = gl.GLTF2(
        scene=0, scenes=[gl.Scene(nodes=[0, 1])],
        nodes=[gl.Node(mesh=0, translation=[10.0, 0.0, 0.0], rotation=quarter_turn_y, scale=[2.0, 2.0, 2.0]),
               gl.Node(mesh=0, matrix=matrix.T.reshape(-1).tolist())],
        meshes=[gl.Mesh(primitives=[gl.Primitive(attributes=gl.Attributes(POSITION=0), indices=1)])],
        accessors=[gl.Accessor(bufferView=0, componentType=5126, count=3, type="VEC3", min=[0, 0, 0], max=[1, 1, 0]),
                   gl.Accessor(bufferView=1, componentType=5123, count=3, type="SCALAR")],
        bufferViews=[gl.BufferView(buffer=0, byteOffset=0, byteLength=36),
                     gl.BufferView(buffer=0, byteOffset=36, byteLength=6)],
        buffers=[gl.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(blob)
    path = tmp_path / "foreign.glb"
    gltf.save_binary(str(path))
    verts, faces, uvs, tex = read_mesh(path)
    assert uvs is None and tex is None and faces.shape == (2, 3)
    # Node 0 in glTF: x' = 10 + 2 z, y' = 2 y, z' = -2 x. Engine frame (x, -z, y).
    expected0 = np.array([[10, 0, 0], [10, 2, 0], [10, 0, 2]], np.float32)
    expected1 = np.array([[0, 0, 5], [1, 0, 5], [0, 0, 6]], np.float32)
    got = {tuple(np.round(verts[f], 5).reshape(-1)) for f in faces}
    assert got == {tuple(expected0.reshape(-1)), tuple(expected1.reshape(-1))}


def test_unsupported_and_broken_inputs_raise_input_error(tmp_path):
    stl = tmp_path / "mesh.stl"
    stl.write_bytes(b"solid x\nendsolid x\n")
    garbage = tmp_path / "garbage.glb"
    garbage.write_bytes(b"this is not a glb file at all")
    for path, words in [(stl, ".glb"), (garbage, "glTF"), (tmp_path / "missing.glb", "not found")]:
        with pytest.raises(InputError, match=words):
            read_mesh(path)
    mesh = _box()
    with pytest.raises(InputError, match="no faces"):
        empty = TexturedMesh(mesh.verts, np.zeros((0, 3), np.int64), mesh.uvs, None, mesh.texture)
        write_glb(empty, tmp_path / "e.glb")
    with pytest.raises(InputError, match="JSON"):
        write_glb(mesh, tmp_path / "x.glb", extras={"bad": object()})
    assert not (tmp_path / "e.glb").exists() and not (tmp_path / "x.glb").exists()
