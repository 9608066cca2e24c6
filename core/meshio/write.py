"""Writers: GLB with an embedded PNG, and OBJ + MTL + PNG (see the package docstring for the conventions)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pygltflib as gl
from PIL import Image

from ..runtime.errors import InputError
from .mesh import TexturedMesh, atomic_write, checked, to_gltf

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _REPEAT = 9729, 9987, 10497
def _version() -> str:
    try:
        from ... import __version__  # the package's (the repository root's __init__.py)
    except ImportError:  # pragma: no cover - only when the module is loaded outside its package
        return "unknown"
    return __version__


def _encode_png(texture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(texture, "RGBA" if texture.shape[2] == 4 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


#: A file to write: its path and the function that writes its content to a given (temporary) path.
FileWrite = tuple[Path, Callable[[Path], None]]


def write_files(files: list[FileWrite]) -> None:
    """Write every file of ``files`` all together or none (:func:`~.mesh.atomic_write`)."""
    atomic_write([path for path, _ in files], [write for _, write in files])


def png_files(image: np.ndarray, path: str | os.PathLike) -> list[FileWrite]:
    """A uint8 ``[H, W, 3|4]`` image as a PNG file."""
    data = _encode_png(np.ascontiguousarray(image))
    return [(Path(path), lambda p: p.write_bytes(data))]


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 ``[H, W, 3|4]`` image as PNG, atomically."""
    write_files(png_files(image, path))
    return Path(path)


def _json_extras(extras: dict | None) -> dict:
    if not extras:
        return {}
    try:
        return json.loads(json.dumps(extras))
    except (TypeError, ValueError) as exc:
        raise InputError(f"GLB extras must be JSON-serialisable (strings, numbers, lists, dicts): {exc}") from exc


def _tangents(mesh: TexturedMesh, verts, faces, uvs, normals) -> np.ndarray:
    """The mesh's tangents for its normal map: stored, else computed (MikkTSpace convention)."""
    if mesh.tangents is not None:
        return np.asarray(mesh.tangents, np.float32)
    from .tangents import vertex_tangents

    return vertex_tangents(verts, faces, uvs, normals)


def _glb_bytes(mesh: TexturedMesh, extras: dict | None) -> bytes:
    """One GLB with a node, mesh and material for ``mesh`` and each of its coarser levels (``NAME_LOD1``...), each
    with its base-colour texture and, when it has one, its normal map (``normalTexture`` and ``TANGENT``)."""
    node_extras = _json_extras(extras)
    levels = mesh.levels()
    blob = bytearray()
    views: list[gl.BufferView] = []
    accessors: list[gl.Accessor] = []
    gltf_meshes, nodes, materials, textures, images = [], [], [], [], []

    def add_view(data: bytes, target: int | None) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        return len(views) - 1

    def add_accessor(array: np.ndarray, kind: str, target: int, bounds: bool = False) -> int:
        component = _UINT if array.dtype == np.uint32 else _FLOAT
        extra = {"min": array.min(0).tolist(), "max": array.max(0).tolist()} if bounds else {}
        accessors.append(gl.Accessor(bufferView=add_view(array.tobytes(), target), componentType=component,
                                     count=len(array) if kind != "SCALAR" else array.size, type=kind, **extra))
        return len(accessors) - 1

    def add_image(image: np.ndarray, name: str) -> int:
        images.append(gl.Image(name=name, bufferView=add_view(_encode_png(image), None), mimeType="image/png"))
        textures.append(gl.Texture(name=name, sampler=0, source=len(images) - 1))
        return len(textures) - 1

    for level, lod in enumerate(levels):
        name = mesh.name if level == 0 and len(levels) == 1 else f"{mesh.name}_LOD{level}"
        verts, faces, uvs, normals, tex = checked(lod)
        attributes = {"POSITION": add_accessor(to_gltf(verts), "VEC3", _ARRAY_BUFFER, bounds=True),
                      "NORMAL": add_accessor(to_gltf(normals), "VEC3", _ARRAY_BUFFER),
                      "TEXCOORD_0": add_accessor(np.ascontiguousarray(uvs, np.float32), "VEC2", _ARRAY_BUFFER)}
        normal_info = None
        if lod.normal_map is not None:
            tan = _tangents(lod, verts, faces, uvs, normals)
            attributes["TANGENT"] = add_accessor(np.concatenate([to_gltf(tan[:, :3]), tan[:, 3:]], 1), "VEC4",
                                                 _ARRAY_BUFFER)
            normal_info = gl.NormalMaterialTexture(index=add_image(lod.normal_map, f"{name}_normal"), texCoord=0)
        indices = add_accessor(faces.reshape(-1), "SCALAR", _ELEMENT_ARRAY_BUFFER)
        color = add_image(tex, f"{name}_basecolor")
        has_alpha = tex.shape[2] == 4 and bool((tex[..., 3] < 255).any())
        materials.append(gl.Material(
            name=f"{name}_material",
            pbrMetallicRoughness=gl.PbrMetallicRoughness(baseColorTexture=gl.TextureInfo(index=color, texCoord=0),
                                                         metallicFactor=0.0, roughnessFactor=0.8),
            normalTexture=normal_info, alphaMode="BLEND" if has_alpha else "OPAQUE", doubleSided=False))
        gltf_meshes.append(gl.Mesh(name=name, primitives=[gl.Primitive(
            attributes=gl.Attributes(**attributes), indices=indices, material=len(materials) - 1, mode=4)]))
        nodes.append(gl.Node(name=name, mesh=len(gltf_meshes) - 1, extras=node_extras))
    blob.extend(b"\0" * (-len(blob) % 4))
    gltf = gl.GLTF2(
        asset=gl.Asset(generator=f"Dreamsmith {_version()}", version="2.0"),
        scene=0,
        scenes=[gl.Scene(name=mesh.name, nodes=list(range(len(nodes))))],
        nodes=nodes, meshes=gltf_meshes, accessors=accessors, bufferViews=views,
        buffers=[gl.Buffer(byteLength=len(blob))], materials=materials, textures=textures, images=images,
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
    write_files(glb_files(mesh, path, extras))
    return Path(path)


def glb_files(mesh: TexturedMesh, path: str | os.PathLike, extras: dict | None = None) -> list[FileWrite]:
    """The file of :func:`write_glb`, to write together with others."""
    data = _glb_bytes(mesh, extras)
    return [(Path(path), lambda p: p.write_bytes(data))]


def _obj_text(name: str, mtl_name: str, verts: np.ndarray, uvs: np.ndarray, normals: np.ndarray,
              faces: np.ndarray) -> str:
    v = to_gltf(verts)
    n = to_gltf(normals)
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
    files = obj_files(mesh, path)
    write_files(files)
    return files[-1][0], files[-2][0], files[0][0]


def obj_sidecars(path: str | os.PathLike) -> tuple[Path, Path]:
    """The ``.mtl`` and ``.png`` an OBJ at ``path`` comes with."""
    path = Path(path)
    return path.with_suffix(".mtl"), path.with_suffix(".png")


def obj_name(name: str) -> str:
    """``name`` made safe for an OBJ ``o`` line: one line, no control characters, spaces as underscores."""
    safe = "".join(ch if ch.isprintable() and not ch.isspace() else "_" for ch in name).strip("_")
    return safe or "dreamsmith"


def obj_files(mesh: TexturedMesh, path: str | os.PathLike) -> list[FileWrite]:
    """The files of :func:`write_obj` (PNG, MTL, OBJ; with a normal map also ``NAME_normal.png``, as ``map_Bump``,
    which Blender's importer wires into a Normal Map node), to write together with others."""
    if mesh.lods:
        raise InputError("Levels of detail are written to one GLB (an OBJ holds one mesh); write a .glb, or drop "
                         "--lods.")
    obj_path = Path(path)
    mtl_path, png_path = obj_sidecars(obj_path)
    verts, faces, uvs, normals, tex = checked(mesh)
    obj_text = _obj_text(obj_name(mesh.name), mtl_path.name, verts, uvs, normals, faces)
    mtl_text = (f"# Dreamsmith {_version()}\nnewmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nNs 10\nd 1\nillum 1\n"
                f"map_Kd {png_path.name}\n")
    png = _encode_png(tex)
    files = [(png_path, lambda p: p.write_bytes(png))]
    if mesh.normal_map is not None:
        normal_path = obj_path.with_name(f"{obj_path.stem}_normal.png")
        normal_png = _encode_png(mesh.normal_map)
        files.append((normal_path, lambda p: p.write_bytes(normal_png)))
        mtl_text += f"map_Bump {normal_path.name}\n"
    return files + [(mtl_path, lambda p: p.write_text(mtl_text, encoding="utf-8")),
                    (obj_path, lambda p: p.write_text(obj_text, encoding="utf-8"))]
