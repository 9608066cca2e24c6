"""Objects in the scene to the engine and back (bpy): export an object's evaluated mesh for ``retexture`` /
``edit``, then put a re-texture's image (and UVs) or an edit's new mesh onto it.

The export is an OBJ written here (no add-on dependency): world-space positions of the evaluated mesh
(modifiers applied), in OBJ's Y-up axes, with 9 significant digits so float32 values round-trip; one ``vt``
per loop from the active UV map; one triangle per loop triangle, in order, so that the engine's triangles map
back to Blender's loops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import bpy

from .scene_io import PROP_PREFIX


@dataclass
class ExportInfo:
    """What the export kept for mapping results back."""

    loops: list[int] = field(default_factory=list)  # loop index of each triangle corner, in file order
    uv_name: str = ""  # the UV map exported ("" when the mesh has none)
    same_topology: bool = True  # the evaluated mesh has the base mesh's loops (modifiers kept the topology)


def check_target(obj) -> str:
    """Why ``obj`` cannot be re-textured or edited ("" when it can)."""
    if obj is None:
        return "Select a mesh object first."
    if obj.type != "MESH":
        return f"{obj.name!r} is a {obj.type.lower()}, not a mesh; select a mesh object."
    if obj.mode != "OBJECT":
        mode = obj.mode.replace("_", " ").title()
        return f"{obj.name!r} is in {mode} Mode; go back to Object Mode (Tab or Ctrl+Tab) first."
    if len(obj.data.polygons) == 0:
        return f"{obj.name!r} has no faces; Dreamsmith needs a mesh with faces."
    return ""


def export_for_engine(obj, path: str, depsgraph=None) -> ExportInfo:
    """Write ``obj``'s evaluated mesh in world space to the OBJ ``path``; raise ValueError if it has no faces."""
    obj.data.update_tag()  # edits since the last redraw (e.g. a removed UV map) are not evaluated yet
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        if len(mesh.loop_triangles) == 0:
            raise ValueError(f"{obj.name!r} has no faces after its modifiers; nothing to texture.")
        mw = obj.matrix_world
        uv_layer = mesh.uv_layers.active
        info = ExportInfo(uv_name=uv_layer.name if uv_layer is not None else "",
                          same_topology=len(mesh.loops) == len(obj.data.loops)
                          and len(mesh.polygons) == len(obj.data.polygons))
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"# Dreamsmith export of {obj.name!r}: world space, Y-up\no object\n")
            for v in mesh.vertices:
                x, y, z = mw @ v.co
                fh.write(f"v {x:.9g} {z:.9g} {-y:.9g}\n")
            if uv_layer is not None:
                for d in uv_layer.data:
                    fh.write(f"vt {d.uv[0]:.9g} {d.uv[1]:.9g}\n")
            for tri in mesh.loop_triangles:
                corners = []
                for vi, li in zip(tri.vertices, tri.loops, strict=True):
                    corners.append(f"{vi + 1}/{li + 1}" if uv_layer is not None else f"{vi + 1}")
                    info.loops.append(li)
                fh.write("f " + " ".join(corners) + "\n")
        os.replace(tmp, path)
        return info
    finally:
        evaluated.to_mesh_clear()


def _read_obj_uvs(path: str) -> list[tuple[float, float]]:
    """UV of each triangle corner of an engine OBJ, in file order (Blender's v-up convention, like OBJ's)."""
    vt: list[tuple[float, float]] = []
    corners: list[tuple[float, float]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("vt "):
                parts = line.split()
                vt.append((float(parts[1]), float(parts[2])))
            elif line.startswith("f "):
                for tok in line.split()[1:]:
                    corners.append(vt[int(tok.split("/")[1]) - 1])
    return corners


def _material(name: str, image, uv_name: str, normal_image=None):
    """A Principled BSDF material with ``image`` as base colour and, when given, ``normal_image`` through a Normal
    Map node (tangent space, on ``uv_name``)."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.location = (-400, 300)
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_name
    uv.location = (-650, 300)
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if normal_image is not None:
        normal_image.colorspace_settings.name = "Non-Color"
        ntex = nodes.new("ShaderNodeTexImage")
        ntex.image = normal_image
        ntex.location = (-400, -50)
        nmap = nodes.new("ShaderNodeNormalMap")
        nmap.uv_map = uv_name
        nmap.location = (-150, -50)
        links.new(uv.outputs["UV"], ntex.inputs["Vector"])
        links.new(ntex.outputs["Color"], nmap.inputs["Color"])
        links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])
    return mat


def export_source(obj, path: str) -> str:
    """Write ``obj`` (a textured mesh, modifiers applied, world space) as a GLB with Blender's glTF exporter, for a
    transfer's source; the selection and active object are restored. Raises ValueError when it has no texture."""
    images = [n.image for s in obj.material_slots if s.material is not None and s.material.node_tree is not None
              for n in s.material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
    if not images or not obj.data.uv_layers:
        raise ValueError(f"{obj.name!r} has no image texture on UVs to carry over; give it one first.")
    view_layer = bpy.context.view_layer
    selected, active = [o for o in view_layer.objects if o.select_get()], view_layer.objects.active
    try:
        for o in selected:
            o.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
        bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True, export_apply=True,
                                  export_animations=False)
    finally:
        obj.select_set(False)
        for o in selected:
            o.select_set(True)
        view_layer.objects.active = active
    return path


def apply_transfer(obj, result_obj: str, info: ExportInfo, source) -> None:
    """Give ``obj`` (a remeshed copy) the transferred base colour and normal map on its exported UV map, and hide
    the ``source`` it was made from (kept in the file)."""
    stem = os.path.splitext(result_obj)[0]
    image = bpy.data.images.load(stem + ".png", check_existing=False)
    image.name = f"{obj.name} colour"[:63]
    image.pack()
    normal = None
    if os.path.isfile(stem + "_normal.png"):
        normal = bpy.data.images.load(stem + "_normal.png", check_existing=False)
        normal.name = f"{obj.name} normal"[:63]
        normal.pack()
    mat = _material(f"Dreamsmith: {obj.name}"[:63], image, info.uv_name, normal)
    obj.data.materials.clear()
    obj.data.materials.append(mat)
    if source is not None:
        source.hide_set(True)
        source.hide_render = True


def apply_retexture(obj, result_obj: str, info: ExportInfo, uvs_kept: bool, props: dict) -> None:
    """Give ``obj`` a new material with the engine's texture; the old materials stay in the file (fake user).

    With ``uvs_kept`` the image uses the exported UV map; otherwise a new UV map "Dreamsmith UV" is added from
    the engine's unwrap (only possible when the modifiers kept the topology, which the job required).
    """
    png = os.path.splitext(result_obj)[0] + ".png"
    prompt = props.get("prompt", "")
    corner_uvs = None
    if not uvs_kept:
        if not info.same_topology:
            raise RuntimeError("The engine made new UVs, but the modifiers change the topology; apply them first.")
        corner_uvs = _read_obj_uvs(result_obj)
        if len(corner_uvs) != len(info.loops):
            raise RuntimeError("The engine's result does not match the exported mesh; nothing was changed.")
        if len(obj.data.uv_layers) >= 8:
            raise RuntimeError(f"{obj.name!r} already has the most UV maps Blender allows; remove one first.")
    image = bpy.data.images.load(png, check_existing=False)  # the first change: nothing to undo if it fails
    image.name = f"Dreamsmith {prompt}"[:63]
    image.pack()
    uv_name = info.uv_name
    if corner_uvs is not None:
        layer = obj.data.uv_layers.new(name="Dreamsmith UV")
        for li, uv in zip(info.loops, corner_uvs, strict=True):
            layer.data[li].uv = uv
        uv_name = layer.name
    mat = _material(f"Dreamsmith: {prompt}"[:63], image, uv_name)
    if len(obj.material_slots) == 0:
        obj.data.materials.append(mat)
    for slot in obj.material_slots:
        if slot.material is not None and slot.material != mat:
            slot.material.use_fake_user = True  # kept in the file: the artist can switch back
        slot.material = mat
    for key, value in props.items():
        obj[PROP_PREFIX + "retexture_" + key] = value


def apply_edit(obj, result_glb: str, props: dict, as_new_object: bool = False):
    """Put the engine's edited mesh on ``obj`` as a new mesh data-block (the old one kept with a fake user), or
    add it as a new object when ``as_new_object``. Returns the object that shows the result."""
    from .scene_io import import_result

    name = f"{obj.name} ({props.get('prompt', 'edit')})"[:63]
    new_obj = import_result(result_glb, name=name, location=(0.0, 0.0, 0.0), props=dict(props, edited_from=obj.name))
    if as_new_object:
        return new_obj
    mesh = new_obj.data
    mesh.transform(new_obj.matrix_world)  # world space, as exported
    mesh.transform(obj.matrix_world.inverted_safe())  # into the target's local space
    old = obj.data
    old.use_fake_user = True
    obj.data = mesh
    for key in list(new_obj.keys()):
        obj[key] = new_obj[key]
    if PROP_PREFIX + "state" in obj:  # the saved state no longer matches the object's mesh
        del obj[PROP_PREFIX + "state"]
    bpy.data.objects.remove(new_obj, do_unlink=True)
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj
