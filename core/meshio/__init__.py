"""Mesh I/O: the textured mesh type, writing and reading GLB (embedded PNG) and OBJ + MTL + PNG.

Axis conventions:
    The engine works in Blender's world frame (Z up, -Y the front). glTF is +Y up, so the GLB
    writer stores ``(x, y, z) -> (x, z, -y)``; Blender's glTF importer applies the inverse and the
    object lands back in the input's Z-up frame. :func:`read_mesh` undoes the conversion.

    OBJ files carry no axis metadata. Blender's OBJ importer defaults to forward ``-Z``, up ``Y``
    (the frame its own OBJ exporter writes), i.e. it maps a file point ``(x, y, z)`` to
    ``(x, -z, y)``. We therefore write ``(x, z, -y)`` to OBJ as well, so a default Blender import
    lands Z-up exactly like the GLB.

UV convention (glTF): ``(0, 0)`` is the top-left corner of the image and ``v`` grows downward;
texture images are stored row 0 = top. OBJ's ``vt`` has ``v`` growing upward, so the OBJ writer
stores ``1 - v`` and the reader flips it back.

All writers (and :func:`atomic_write`, which the engine's other files use) are atomic: they write to
temporary files in the target directory and ``os.replace`` them into place; on any failure the temporary files are
removed and nothing is left at the target path(s).
"""

from .mesh import TexturedMesh, atomic_write, vertex_normals
from .read import read_mesh
from .write import (
                    FileWrite,
                    glb_files,
                    obj_files,
                    obj_sidecars,
                    png_files,
                    write_files,
                    write_glb,
                    write_obj,
                    write_png,
)

__all__ = ["FileWrite", "TexturedMesh", "atomic_write", "glb_files", "obj_files", "obj_sidecars", "png_files",
           "read_mesh", "vertex_normals", "write_files", "write_glb", "write_obj", "write_png"]
