"""Bringing an engine result into the open scene (bpy). Called by operators and by scripts run in Blender."""

from __future__ import annotations

import os

import bpy

PROP_PREFIX = "dreamsmith_"


def _material_images(obj: bpy.types.Object) -> list[bpy.types.Image]:
    images = []
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or mat.node_tree is None:
            continue
        images += [n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
    return images


def import_result(path: str | os.PathLike, name: str | None = None, location=None,
                  props: dict | None = None) -> bpy.types.Object:
    """Import an engine GLB as one mesh object: smooth shaded, textures packed (a normal map is wired by Blender's
    importer into a Normal Map node), selected and active. A GLB with levels of detail (``*_LOD0``, ``*_LOD1``...)
    becomes one object per level in a new collection named after the result; LOD0 is the one returned, the others
    are hidden.

    Args:
        path: The engine's GLB (glTF +Y up; Blender's importer restores Z up).
        name: Object and mesh name (default: the file's stem); levels get ``NAME_LOD0``...
        location: Where to put the object (default: the 3D cursor).
        props: Extra custom properties, stored with a ``dreamsmith_`` prefix (never tokens or secrets).

    Returns:
        The new object (LOD0). Raises RuntimeError (with the file name) when the file holds no mesh; the scene is
        then left as it was.
    """
    path = os.fspath(path)
    before_objects = set(bpy.data.objects)
    before_meshes, before_materials, before_images = set(bpy.data.meshes), set(bpy.data.materials), set(bpy.data.images)
    bpy.ops.import_scene.gltf(filepath=path)
    new = [o for o in bpy.data.objects if o not in before_objects]
    meshes = sorted((o for o in new if o.type == "MESH"), key=lambda o: o.name)
    levels = len(meshes) > 1 and all("_LOD" in o.name for o in meshes)
    if len(meshes) != 1 and not levels:
        for o in new:
            bpy.data.objects.remove(o, do_unlink=True)
        for coll, before in ((bpy.data.meshes, before_meshes), (bpy.data.materials, before_materials),
                             (bpy.data.images, before_images)):
            for block in [b for b in coll if b not in before]:
                coll.remove(block)
        raise RuntimeError(f"{os.path.basename(path)} holds {len(meshes)} meshes; expected one engine result.")
    for extra in new:  # the importer may add empties for glTF nodes; keep the meshes only, at their world place
        if extra not in meshes:
            bpy.data.objects.remove(extra, do_unlink=True)
    name = name or os.path.splitext(os.path.basename(path))[0]
    where = tuple(bpy.context.scene.cursor.location) if location is None else tuple(location)
    if levels:
        collection = bpy.data.collections.new(name)
        bpy.context.scene.collection.children.link(collection)
    for k, obj in enumerate(meshes):
        obj.matrix_world = obj.matrix_world.copy()
        obj.parent = None
        obj.name = obj.data.name = f"{name}_LOD{k}" if levels else name
        obj.location = where
        for poly in obj.data.polygons:
            poly.use_smooth = True
        for image in _material_images(obj):
            if image.packed_file is None:
                image.pack()
        for key, value in (props or {}).items():
            obj[PROP_PREFIX + key] = value
        if levels:
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            collection.objects.link(obj)
            obj.hide_set(k > 0)
            obj.hide_render = k > 0
    obj = meshes[0]
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj
