"""Readers: GLB / glTF (node transforms applied, primitives merged) and OBJ, into the engine's Z-up frame."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pygltflib as gl
from PIL import Image

from ..runtime.errors import InputError
from .mesh import from_gltf

_COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read a GLB / glTF or OBJ into the engine's Z-up frame.

    GLB/glTF: every triangle primitive of every node of the default scene, with the nodes' world transforms
    applied, is merged into one mesh. UVs are returned when every primitive has ``TEXCOORD_0``; the texture is
    the base-colour image of the first textured primitive's material. Points and lines are ignored.
    OBJ: polygons are fan-triangulated; the texture is the ``map_Kd`` of the first material that has one.

    Args:
        path: A ``.glb``, ``.gltf`` or ``.obj`` file.

    Returns:
        ``verts [V, 3]`` float32, ``faces [F, 3]`` int64, ``uvs [V, 2]`` float32 (glTF convention) or None, and
        ``texture [H, W, 3|4]`` uint8 or None.

    Raises:
        InputError: The file is missing, of an unsupported kind, malformed, or holds no triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Mesh file not found: {path}. Check the path.")
    readers = {".glb": _read_gltf, ".gltf": _read_gltf, ".obj": _read_obj}
    read = readers.get(path.suffix.lower())
    if read is None:
        raise InputError(f"Unsupported mesh file '{path.name}': use a .glb, .gltf or .obj file (export one from "
                         "Blender).")
    try:
        return read(path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"Cannot read '{path.name}' ({exc.strerror or exc}); check its permissions.") from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        # A structure the format does not allow (an unknown component type, a node pointing at no mesh, ...).
        raise InputError(f"'{path.name}' is malformed ({type(exc).__name__}: {exc}); re-export it from Blender "
                         "(File > Export) and try again.") from None


# ----------------------------------------------------------------------------------------------------------- readers

def _read_accessor(gltf: gl.GLTF2, buffers: Callable[[int], bytes], index: int) -> np.ndarray:
    """Accessor ``index`` as a ``[count, ncomp]`` array (normalised integers become floats in [0, 1] / [-1, 1])."""
    acc = gltf.accessors[index]
    if acc.sparse is not None:
        raise InputError("The glTF uses sparse accessors, which are not supported; re-export it without them.")
    dtype = np.dtype(_COMPONENT_DTYPES[acc.componentType]).newbyteorder("<")
    ncomp = _TYPE_SIZES[acc.type]
    if acc.bufferView is None or acc.count == 0:
        return np.zeros((acc.count, ncomp), dtype=dtype)
    view = gltf.bufferViews[acc.bufferView]
    data = buffers(view.buffer)
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    elem = dtype.itemsize * ncomp
    stride = view.byteStride or elem
    if start + stride * (acc.count - 1) + elem > len(data):
        raise InputError("The glTF file is truncated or corrupt (an accessor reads past its buffer).")
    arr = np.array(np.ndarray((acc.count, ncomp), dtype=dtype, buffer=data, offset=start,
                              strides=(stride, dtype.itemsize)))
    if acc.normalized and dtype.kind in "iu":
        info = np.iinfo(dtype)
        arr = np.maximum(arr.astype(np.float32) / info.max, -1.0)
    return arr


def _node_matrix(node: gl.Node) -> np.ndarray:
    """The node's local ``[4, 4]`` transform (glTF matrices are column-major)."""
    if node.matrix:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T
    x, y, z, w = node.rotation or (0.0, 0.0, 0.0, 1.0)
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = rot * np.asarray(node.scale or (1.0, 1.0, 1.0), dtype=np.float64)[None, :]
    m[:3, 3] = node.translation or (0.0, 0.0, 0.0)
    return m


def _triangles(mode: int, idx: np.ndarray) -> np.ndarray | None:
    """``[F, 3]`` triangles from a primitive's index list, or None for points and lines."""
    if mode == 4:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if mode == 5 and len(idx) >= 3:  # strip: every other triangle flips to keep the winding
        k = np.arange(len(idx) - 2)
        odd = (k % 2).astype(bool)
        a, b = np.where(odd, idx[k + 1], idx[k]), np.where(odd, idx[k], idx[k + 1])
        return np.stack([a, b, idx[k + 2]], axis=1)
    if mode == 6 and len(idx) >= 3:  # fan
        k = np.arange(1, len(idx) - 1)
        return np.stack([np.full_like(k, idx[0]), idx[k], idx[k + 1]], axis=1)
    return None


def _gltf_image(gltf: gl.GLTF2, buffers: Callable[[int], bytes], prim: gl.Primitive, base: Path) -> np.ndarray | None:
    """The base-colour image of ``prim``'s material as uint8 ``[H, W, 3|4]``, or None."""
    if prim.material is None:
        return None
    pbr = gltf.materials[prim.material].pbrMetallicRoughness
    if pbr is None or pbr.baseColorTexture is None:
        return None
    source = gltf.textures[pbr.baseColorTexture.index].source
    if source is None:
        return None
    image = gltf.images[source]
    if image.bufferView is not None:
        view = gltf.bufferViews[image.bufferView]
        off = view.byteOffset or 0
        raw = buffers(view.buffer)[off: off + view.byteLength]
    elif image.uri and image.uri.startswith("data:"):
        raw = gltf.decode_data_uri(image.uri)
    elif image.uri:
        from urllib.parse import unquote

        file = base / unquote(image.uri)
        if not file.is_file():
            raise InputError(f"The glTF's texture image '{file}' is missing; keep it beside the .gltf or use a .glb.")
        raw = file.read_bytes()
    else:
        return None
    img = Image.open(io.BytesIO(raw))
    return np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB"))


def _read_gltf(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    try:
        gltf = gl.GLTF2.load(str(path))
    except Exception as exc:  # pygltflib raises assorted errors on garbage input
        raise InputError(f"Could not read '{path.name}' as glTF 2.0 ({exc}); re-export it as a .glb.") from exc
    if gltf is None:
        raise InputError(f"'{path.name}' holds no glTF JSON chunk; re-export it as a .glb.")
    unsupported = sorted(set(gltf.extensionsRequired or []) - {"KHR_mesh_quantization"})
    if unsupported:
        raise InputError(f"'{path.name}' requires glTF extension(s) {', '.join(unsupported)}, which Dreamsmith cannot "
                         "read; re-export it without compression (e.g. untick Draco in Blender's glTF exporter).")
    cache: dict[int, bytes] = {}

    def buffers(i: int) -> bytes:
        if i not in cache:
            data = gltf.get_data_from_buffer_uri(gltf.buffers[i].uri)
            if data is None:
                raise InputError(f"A buffer of '{path.name}' could not be loaded (missing .bin file?).")
            cache[i] = bytes(data)
        return cache[i]

    if gltf.scenes:
        roots = list(gltf.scenes[gltf.scene or 0].nodes or [])
    else:
        children = {c for n in gltf.nodes for c in (n.children or [])}
        roots = [i for i in range(len(gltf.nodes)) if i not in children]
    parts_v, parts_f, parts_uv, texture, offset = [], [], [], None, 0
    stack = [(i, np.eye(4), 0) for i in roots]
    while stack:
        ni, parent, depth = stack.pop()
        if depth > 256:
            raise InputError(f"'{path.name}' has a cyclic or absurdly deep node hierarchy.")
        node = gltf.nodes[ni]
        world = parent @ _node_matrix(node)
        stack.extend((c, world, depth + 1) for c in (node.children or []))
        if node.mesh is None:
            continue
        flip = np.linalg.det(world[:3, :3]) < 0
        for prim in gltf.meshes[node.mesh].primitives:
            if prim.attributes.POSITION is None:
                continue
            pos = _read_accessor(gltf, buffers, prim.attributes.POSITION).astype(np.float64)
            idx = (np.arange(len(pos)) if prim.indices is None
                   else _read_accessor(gltf, buffers, prim.indices).reshape(-1).astype(np.int64))
            tris = _triangles(4 if prim.mode is None else prim.mode, idx)
            if tris is None or len(tris) == 0:
                continue
            if tris.max() >= len(pos):
                raise InputError(f"'{path.name}' has triangle indices past its vertex count; the file is corrupt.")
            if flip:
                tris = tris[:, ::-1]
            parts_v.append(pos @ world[:3, :3].T + world[:3, 3])
            parts_f.append(tris + offset)
            offset += len(pos)
            uv_id = prim.attributes.TEXCOORD_0
            parts_uv.append(None if uv_id is None else _read_accessor(gltf, buffers, uv_id).astype(np.float32))
            if texture is None:
                texture = _gltf_image(gltf, buffers, prim, path.parent)
    if not parts_f:
        raise InputError(f"'{path.name}' contains no triangle meshes; Dreamsmith needs a triangulated mesh.")
    verts = from_gltf(np.concatenate(parts_v))
    uvs = None if any(u is None for u in parts_uv) else np.concatenate(parts_uv)
    return verts, np.concatenate(parts_f), uvs, texture


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    v, vt, corners, mtllibs = [], [], [], []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                key = parts[0]
                if key == "v":
                    if len(parts) < 4:
                        raise InputError(f"'{path.name}' line {number}: a vertex needs three coordinates (x y z), "
                                         f"found {len(parts) - 1}; the file is damaged.")
                    v.append([float(x) for x in parts[1:4]])
                elif key == "vt":
                    vt.append([float(x) for x in (parts[1:3] + ["0"])[:2]])
                elif key == "f":
                    poly = []
                    for tok in parts[1:]:
                        ids = tok.split("/")
                        vi = int(ids[0])
                        ti = int(ids[1]) if len(ids) > 1 and ids[1] else None
                        vi = vi - 1 if vi > 0 else len(v) + vi
                        ti = None if ti is None else (ti - 1 if ti > 0 else len(vt) + ti)
                        poly.append((vi, ti))
                    corners.extend(c for k in range(1, len(poly) - 1) for c in (poly[0], poly[k], poly[k + 1]))
                elif key == "mtllib":
                    mtllibs.append(line.strip()[len("mtllib"):].strip())
    except (ValueError, IndexError) as exc:
        raise InputError(f"'{path.name}' is not a valid OBJ file ({exc}).") from exc
    if not corners:
        raise InputError(f"'{path.name}' contains no faces; Dreamsmith needs a mesh with faces.")
    pos = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    vi = np.array([c[0] for c in corners], dtype=np.int64)
    if vi.min() < 0 or vi.max() >= len(pos):
        raise InputError(f"'{path.name}' has face indices outside its vertex list; the file is corrupt.")
    has_uv = all(c[1] is not None for c in corners)
    uvs = None
    if not has_uv:
        verts, faces = pos, vi.reshape(-1, 3)
    else:
        ti = np.array([c[1] for c in corners], dtype=np.int64)
        tex = np.asarray(vt, dtype=np.float32).reshape(-1, 2)
        if ti.min() < 0 or ti.max() >= len(tex):
            raise InputError(f"'{path.name}' has texture-coordinate indices outside its vt list; the file is corrupt.")
        if len(tex) == len(pos) and np.array_equal(vi, ti):  # one vt per v (our own files): keep the order
            verts, faces, uv = pos, vi.reshape(-1, 3), tex
        else:  # a vertex per distinct (v, vt) pair
            pairs, inverse = np.unique(np.stack([vi, ti], axis=1), axis=0, return_inverse=True)
            verts, faces, uv = pos[pairs[:, 0]], inverse.reshape(-1, 3), tex[pairs[:, 1]]
        uvs = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)
    return from_gltf(verts), faces.astype(np.int64), uvs, _obj_texture(path.parent, mtllibs)


def _obj_texture(base: Path, mtllibs: list[str]) -> np.ndarray | None:
    """The first ``map_Kd`` image named by the OBJ's material libraries, or None."""
    for lib in mtllibs:
        mtl = base / lib
        if not mtl.is_file():
            continue
        for line in mtl.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "map_Kd":
                for name in (line.strip()[len("map_Kd"):].strip(), parts[-1]):
                    if (base / name).is_file():
                        img = Image.open(base / name)
                        return np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB"))
    return None
