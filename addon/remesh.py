"""Remesh to Quads: Blender's own quad remesher (QuadriFlow) rebuilds the active mesh at a face count, a Smart UV
Project lays out the new quads, and the engine's transfer bakes the original's texture and surface detail (a
normal map) onto them. The original stays in the file, hidden; the result is one undo step."""

import bmesh
import bpy
from bpy.props import IntProperty

from .mesh_io import check_target
from .operators import _can_start, dispatch
from .running import Pending, Request


def manifold_problem(mesh) -> str:
    """Why QuadriFlow cannot take ``mesh`` once repaired ("" when it can): open or non-manifold edges. The repair
    (``mesh`` is changed: give it a copy) merges duplicate vertices (UV seams) and near ones, dissolves slivers and
    makes the face normals consistent."""
    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        size = max((max(v.co[i] for v in bm.verts) - min(v.co[i] for v in bm.verts)) for i in range(3))
        tolerance = max(size, 1e-6) * 1e-4  # slivers of marching cubes or tets trip QuadriFlow's check
        bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=tolerance)
        bmesh.ops.dissolve_degenerate(bm, dist=tolerance, edges=bm.edges)
        bmesh.ops.triangulate(bm, faces=bm.faces)
        bmesh.ops.recalc_face_normals(bm, faces=bm.faces)
        bad = [e for e in bm.edges if not e.is_manifold]
        bm.to_mesh(mesh)
    finally:
        bm.free()
    if bad:
        return (f"QuadriFlow needs a closed surface, and this mesh has {len(bad)} open or non-manifold edges; fill "
                f"its holes (Edit Mode: Mesh > Clean Up > Fill Holes) or give it a Remesh modifier (Voxel) first.")
    return ""


class DREAMSMITH_OT_remesh_quads(bpy.types.Operator):
    """Rebuild the active mesh as quads (Blender's QuadriFlow) and carry its texture and surface detail over as a
    normal map; the original is kept, hidden"""

    bl_idname = "dreamsmith.remesh_quads"
    bl_label = "Remesh to Quads"
    bl_options = {"REGISTER"}

    target_faces: IntProperty(name="Faces", default=5000, min=100, max=200_000,
                              description="About how many quads the new mesh has")

    @classmethod
    def poll(cls, context):
        """The engine can run, and the active object is a textured mesh in Object Mode."""
        if not _can_start(cls):
            return False
        problem = check_target(context.view_layer.objects.active if context.view_layer else None)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def execute(self, context):
        """Make the quad copy (refused, and nothing left, when QuadriFlow cannot take the mesh), then the transfer."""
        source = context.view_layer.objects.active
        problem = check_target(source)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        if not any(n.type == "TEX_IMAGE" and n.image is not None for s in source.material_slots
                   if s.material is not None and s.material.node_tree is not None for n in s.material.node_tree.nodes):
            self.report({"ERROR"}, f"{source.name!r} has no image texture to carry over; give it one first.")
            return {"CANCELLED"}
        depsgraph = context.evaluated_depsgraph_get()
        mesh = bpy.data.meshes.new_from_object(source.evaluated_get(depsgraph))
        problem = manifold_problem(mesh)
        if problem:
            bpy.data.meshes.remove(mesh)
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        quads = bpy.data.objects.new(f"{source.name} Quads", mesh)
        quads.matrix_world = source.matrix_world.copy()
        for collection in source.users_collection:
            collection.objects.link(quads)
        try:
            self._remesh(context, quads)
        except RuntimeError as exc:
            bpy.data.objects.remove(quads, do_unlink=True)
            bpy.data.meshes.remove(mesh)
            self.report({"ERROR"}, f"QuadriFlow could not remesh {source.name!r} ({exc}); try another face count.")
            return {"CANCELLED"}
        values = {"prompt": "", "negative_prompt": "", "preset": context.scene.dreamsmith.preset, "seed": 0,
                  "source": source.name}
        return dispatch(self, context, [Pending(Request(values, "", {}, "transfer"), quads.name)])

    def _remesh(self, context, obj) -> None:
        """QuadriFlow, then Smart UV Project, on ``obj`` (made active and alone in the selection)."""
        view_layer = context.view_layer
        for o in view_layer.objects:
            o.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
        with context.temp_override(active_object=obj, object=obj, selected_objects=[obj]):
            if bpy.ops.object.quadriflow_remesh(target_faces=self.target_faces, use_mesh_symmetry=False) \
                    != {"FINISHED"}:
                # Closed, but slivers (a marching-cubes or tet surface in float32) upset QuadriFlow's check: a voxel
                # remesh at 1/200 of the object's size gives it a clean surface; the texture still comes from the
                # original.
                obj.data.remesh_voxel_size = max(obj.dimensions) / 200.0 / max(max(obj.scale), 1e-9)
                bpy.ops.object.voxel_remesh()
                if bpy.ops.object.quadriflow_remesh(target_faces=self.target_faces, use_mesh_symmetry=False) \
                        != {"FINISHED"}:
                    raise RuntimeError("it stopped, even on a voxel remesh of the mesh")
            if len(obj.data.polygons) == 0:
                raise RuntimeError("no faces came out")
            bpy.ops.object.mode_set(mode="EDIT")
            bpy.ops.mesh.select_all(action="SELECT")
            bpy.ops.uv.smart_project(angle_limit=1.15, island_margin=0.02)
            bpy.ops.object.mode_set(mode="OBJECT")


CLASSES = (DREAMSMITH_OT_remesh_quads,)
