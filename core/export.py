"""Writing and reading textured meshes: GLB (embedded PNG) and OBJ + MTL + PNG.

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

All writers are atomic: they write to temporary files in the target directory and ``os.replace``
them into place; on any failure the temporary files are removed and nothing is left at the
target path(s).
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as gl
from PIL import Image

from .errors import InputError

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _REPEAT = 9729, 9987, 10497
_COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


@dataclass
class TexturedMesh:
    """A triangle mesh with one base-colour texture, in the engine's Z-up world frame.

    Attributes:
        verts: ``[V, 3]`` float32 positions.
        faces: ``[F, 3]`` int vertex indices, counter-clockwise seen from outside.
        uvs: ``[V, 2]`` float32 per-vertex UVs in the glTF convention (a vertex on a UV seam is duplicated).
        normals: ``[V, 3]`` float32 unit normals, or None to compute area-weighted vertex normals on export.
        texture: ``[H, W, 3]`` or ``[H, W, 4]`` uint8 image, row 0 = top.
        name: Object name (GLB node and mesh name, OBJ object name).
    """

    verts: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray | None
    texture: np.ndarray
    name: str = "dreamsmith"


def _version() -> str:
    try:
        from .. import __version__
    except ImportError:  # pragma: no cover - only when the module is loaded outside its package
        return "unknown"
    return __version__


def _checked(mesh: TexturedMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``mesh`` and return ``(verts, faces, uvs, normals, texture)`` as contiguous arrays of export dtypes."""
    verts = np.ascontiguousarray(np.asarray(mesh.verts, dtype=np.float32))
    faces = np.asarray(mesh.faces)
    uvs = np.ascontiguousarray(np.asarray(mesh.uvs, dtype=np.float32))
    tex = np.asarray(mesh.texture)
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) == 0:
        raise InputError(f"The mesh has no vertices or malformed positions (shape {verts.shape}, expected [V, 3]).")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise InputError(f"The mesh has no faces (faces shape {faces.shape}); export needs at least one triangle.")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise InputError(f"Face indices must lie in [0, {len(verts) - 1}]; got [{faces.min()}, {faces.max()}].")
    if uvs.shape != (len(verts), 2):
        raise InputError(f"UVs must be per-vertex [V, 2] = [{len(verts)}, 2]; got {uvs.shape}. Unwrap the mesh first.")
    if not (np.isfinite(verts).all() and np.isfinite(uvs).all()):
        raise InputError("The mesh has NaN or infinite positions or UVs; it cannot be exported.")
    if tex.dtype != np.uint8 or tex.ndim != 3 or tex.shape[2] not in (3, 4) or tex.shape[0] < 1 or tex.shape[1] < 1:
        raise InputError(f"The texture must be a uint8 [H, W, 3|4] image; got {tex.dtype} {tex.shape}.")
    normals = vertex_normals(verts, faces) if mesh.normals is None else np.asarray(mesh.normals, dtype=np.float32)
    if normals.shape != verts.shape:
        raise InputError(f"Normals must be [V, 3] like the positions; got {normals.shape}.")
    normals = _unit(normals)
    return verts, faces.astype(np.uint32), uvs, normals, np.ascontiguousarray(tex)


def _unit(n: np.ndarray) -> np.ndarray:
    """Normalise ``[N, 3]`` vectors; zero or non-finite ones become ``+Z``."""
    n = np.nan_to_num(np.asarray(n, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    bad = length[:, 0] < 1e-12
    out = n / np.where(length < 1e-12, 1.0, length)
    out[bad] = (0.0, 0.0, 1.0)
    return out.astype(np.float32)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]``, shared across vertices duplicated at UV seams.

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` indices.
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    # Weld exact duplicates (UV-seam copies) so seams do not show as hard edges.
    _, weld = np.unique(verts, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = 2 * area
    acc = np.zeros((weld.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, weld[faces[:, k]], fn)
    return _unit(acc[weld])


def _to_gltf(p: np.ndarray) -> np.ndarray:
    """Z-up engine ``[N, 3]`` -> glTF / OBJ Y-up: ``(x, y, z) -> (x, z, -y)``."""
    return np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1).astype(np.float32)


def _from_gltf(p: np.ndarray) -> np.ndarray:
    """Y-up glTF / OBJ ``[N, 3]`` -> Z-up engine: ``(x, y, z) -> (x, -z, y)``."""
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1).astype(np.float32)


def _encode_png(texture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(texture, "RGBA" if texture.shape[2] == 4 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _json_extras(extras: dict | None) -> dict:
    if not extras:
        return {}
    try:
        return json.loads(json.dumps(extras))
    except (TypeError, ValueError) as exc:
        raise InputError(f"GLB extras must be JSON-serialisable (strings, numbers, lists, dicts): {exc}") from exc


def _atomic_write(targets: list[Path], writers: list[Callable[[Path], None]]) -> None:
    """Write each target through a temp file in its directory, then rename all into place; all or nothing."""
    temps: list[Path] = []
    placed: list[Path] = []
    try:
        for target, write in zip(targets, writers, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            # A fresh name opened exclusively (not mkstemp, whose 0600 mode would stick to the result).
            tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
            with open(tmp, "xb"):
                pass
            temps.append(tmp)
            write(tmp)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for p in temps + placed:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        raise


def _glb_bytes(mesh: TexturedMesh, extras: dict | None) -> bytes:
    verts, faces, uvs, normals, tex = _checked(mesh)
    node_extras = _json_extras(extras)
    pos = _to_gltf(verts)
    nrm = _to_gltf(normals)
    png = _encode_png(tex)

    blob = bytearray()
    views: list[gl.BufferView] = []

    def add_view(data: bytes, target: int | None) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        return len(views) - 1

    accessors = [
        gl.Accessor(bufferView=add_view(pos.tobytes(), _ARRAY_BUFFER), componentType=_FLOAT, count=len(pos),
                    type="VEC3", min=pos.min(0).tolist(), max=pos.max(0).tolist()),
        gl.Accessor(bufferView=add_view(nrm.tobytes(), _ARRAY_BUFFER), componentType=_FLOAT, count=len(nrm),
                    type="VEC3"),
        gl.Accessor(bufferView=add_view(uvs.tobytes(), _ARRAY_BUFFER), componentType=_FLOAT, count=len(uvs),
                    type="VEC2"),
        gl.Accessor(bufferView=add_view(faces.reshape(-1).tobytes(), _ELEMENT_ARRAY_BUFFER), componentType=_UINT,
                    count=faces.size, type="SCALAR"),
    ]
    image_view = add_view(png, None)
    blob.extend(b"\0" * (-len(blob) % 4))

    has_alpha = tex.shape[2] == 4 and bool((tex[..., 3] < 255).any())
    material = gl.Material(
        name=f"{mesh.name}_material",
        pbrMetallicRoughness=gl.PbrMetallicRoughness(baseColorTexture=gl.TextureInfo(index=0, texCoord=0),
                                                     metallicFactor=0.0, roughnessFactor=0.8),
        alphaMode="BLEND" if has_alpha else "OPAQUE",
        doubleSided=False,
    )
    gltf = gl.GLTF2(
        asset=gl.Asset(generator=f"Dreamsmith {_version()}", version="2.0"),
        scene=0,
        scenes=[gl.Scene(name=mesh.name, nodes=[0])],
        nodes=[gl.Node(name=mesh.name, mesh=0, extras=node_extras)],
        meshes=[gl.Mesh(name=mesh.name, primitives=[gl.Primitive(
            attributes=gl.Attributes(POSITION=0, NORMAL=1, TEXCOORD_0=2), indices=3, material=0, mode=4)])],
        accessors=accessors,
        bufferViews=views,
        buffers=[gl.Buffer(byteLength=len(blob))],
        materials=[material],
        textures=[gl.Texture(name=f"{mesh.name}_basecolor", sampler=0, source=0)],
        images=[gl.Image(name=f"{mesh.name}_basecolor", bufferView=image_view, mimeType="image/png")],
        samplers=[gl.Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_REPEAT, wrapT=_REPEAT)],
    )
    gltf.set_binary_blob(bytes(blob))
    return b"".join(gltf.save_to_bytes())


def write_glb(mesh: TexturedMesh, path: str | os.PathLike, extras: dict | None = None) -> Path:
    """Write ``mesh`` as a single-mesh GLB with an embedded PNG base-colour texture, atomically.

    Args:
        mesh: The mesh in the engine's Z-up frame (converted to glTF's +Y up on write).
        path: Target ``.glb`` path; its directory is created if missing.
        extras: Optional JSON-serialisable metadata stored on the node (prompt, seed, preset...); Blender's
            importer turns it into custom properties on the object.

    Returns:
        The written path.

    Raises:
        InputError: The mesh is empty or malformed, or ``extras`` is not JSON-serialisable.
    """
    path = Path(path)
    data = _glb_bytes(mesh, extras)
    _atomic_write([path], [lambda p: p.write_bytes(data)])
    return path


def _obj_text(name: str, mtl_name: str, verts: np.ndarray, uvs: np.ndarray, normals: np.ndarray,
              faces: np.ndarray) -> str:
    v = _to_gltf(verts)
    n = _to_gltf(normals)
    vt = np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1)
    f = faces.astype(np.int64) + 1
    lines = [f"# Dreamsmith {_version()}: Y-up (x, z, -y) of the Z-up engine frame; Blender's default OBJ import "
             "restores Z-up.", f"mtllib {mtl_name}", f"o {name}"]
    lines += [f"v {a:.9g} {b:.9g} {c:.9g}" for a, b, c in v.tolist()]  # 9 digits: float32 round-trips
    lines += [f"vt {a:.9g} {b:.9g}" for a, b in vt.tolist()]
    lines += [f"vn {a:.6g} {b:.6g} {c:.6g}" for a, b, c in n.tolist()]
    lines += ["usemtl material0", "s 1"]
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in f.tolist()]
    return "\n".join(lines) + "\n"


def write_obj(mesh: TexturedMesh, path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Write ``mesh`` as ``NAME.obj`` + ``NAME.mtl`` + ``NAME.png`` side by side, atomically (all three or none).

    The MTL references the PNG by its bare file name (``map_Kd NAME.png``) and the OBJ the MTL by its bare
    name, so the set can be moved or zipped together. Positions and normals are written Y-up ``(x, z, -y)``
    (see the module docstring); ``vt`` stores ``1 - v``.

    Args:
        mesh: The mesh in the engine's Z-up frame.
        path: Target ``.obj`` path; the ``.mtl`` and ``.png`` share its stem.

    Returns:
        ``(obj_path, mtl_path, png_path)``.

    Raises:
        InputError: The mesh is empty or malformed.
    """
    obj_path = Path(path)
    mtl_path, png_path = obj_path.with_suffix(".mtl"), obj_path.with_suffix(".png")
    verts, faces, uvs, normals, tex = _checked(mesh)
    obj_text = _obj_text(mesh.name, mtl_path.name, verts, uvs, normals, faces)
    mtl_text = (f"# Dreamsmith {_version()}\nnewmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nNs 10\nd 1\nillum 1\n"
                f"map_Kd {png_path.name}\n")
    png = _encode_png(tex)
    _atomic_write([png_path, mtl_path, obj_path], [lambda p: p.write_bytes(png),
                                                   lambda p: p.write_text(mtl_text, encoding="utf-8"),
                                                   lambda p: p.write_text(obj_text, encoding="utf-8")])
    return obj_path, mtl_path, png_path


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
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        return _read_gltf(path)
    if suffix == ".obj":
        return _read_obj(path)
    raise InputError(f"Unsupported mesh file '{path.name}': use a .glb, .gltf or .obj file (export one from Blender).")


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
    verts = _from_gltf(np.concatenate(parts_v))
    uvs = None if any(u is None for u in parts_uv) else np.concatenate(parts_uv)
    return verts, np.concatenate(parts_f), uvs, texture


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    v, vt, corners, mtllibs = [], [], [], []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if not parts:
                    continue
                key = parts[0]
                if key == "v":
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
    return _from_gltf(verts), faces.astype(np.int64), uvs, _obj_texture(path.parent, mtllibs)


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
