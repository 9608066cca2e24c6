"""Import mesh files with Blender's own importers and print what a user would see, as JSON.

Run in a separate process (bpy must not be imported by the test process):
    python blender_import_report.py FILE [FILE ...]   (.glb/.gltf via import_scene.gltf, .obj via wm.obj_import)
Prints one line ``REPORT <json list>``, one entry per file: mesh object count, UV layer names, whether a
material has an Image Texture node linked to the Principled BSDF's Base Color, the world-space bounding box
of all mesh vertices, and the first object's custom properties.
"""

import json
import sys

import bpy


def _report(path: str) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if path.lower().endswith(".obj"):
        bpy.ops.wm.obj_import(filepath=path)
    else:
        bpy.ops.import_scene.gltf(filepath=path)
    objs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    pts = [o.matrix_world @ v.co for o in objs for v in o.data.vertices]
    linked = False
    for o in objs:
        for mat in o.data.materials:
            if mat is None or mat.node_tree is None:
                continue
            for link in mat.node_tree.links:
                if (link.from_node.type == "TEX_IMAGE" and link.from_node.image is not None
                        and link.to_node.type == "BSDF_PRINCIPLED" and link.to_socket.name == "Base Color"):
                    linked = True
    props = {}
    if objs:
        for key in objs[0].keys():
            value = objs[0][key]
            props[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return {
        "mesh_objects": len(objs),
        "uv_layers": [layer.name for o in objs for layer in o.data.uv_layers],
        "base_color_image_linked": linked,
        "bbox_min": [min(p[i] for p in pts) for i in range(3)] if pts else None,
        "bbox_max": [max(p[i] for p in pts) for i in range(3)] if pts else None,
        "faces": sum(len(o.data.polygons) for o in objs),
        "props": props,
    }


print("REPORT " + json.dumps([_report(p) for p in sys.argv[1:]]), flush=True)
