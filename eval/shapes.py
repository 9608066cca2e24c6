"""The sweeps' shape judge: how far a result is from each of the toy prior's primitives (Chamfer after normalising
by the bounding box or by the surface, over turns about the vertical), its dominant colour, whether it has a hole;
and the primitives as textured meshes to edit from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.finish.bake import unwrap
from ..core.geometry.metrics import chamfer_meshes, sample_surface
from ..core.meshio import TexturedMesh, read_mesh
from ..core.render.mesh import render_textured
from ..core.render.preview import preview_cameras
from .synth_objects import ground_truth_mesh
from .toy_prior_data import COLOURS, SHAPES, shape_object

TOY = Path(__file__).resolve().parents[1] / "assets" / "demo_prior"  # the committed toy prior


#: How a mesh is brought to a common size before it is compared with the primitives: ``"bbox"``, centred on its
#: bounding box and scaled to a unit box diagonal (what the extreme points say); ``"surface"``, centred on its
#: surface's centroid and scaled to a unit root-mean-square distance of the surface from it (what the whole surface
#: says: a rim or a spike a few percent of the area moves it by a few percent, where it can move the box by a third).
SCALES = ("bbox", "surface")


def normalised(verts: np.ndarray, faces: np.ndarray | None = None, scale: str = "bbox") -> np.ndarray:
    """``verts`` centred and scaled by ``scale`` (:data:`SCALES`; ``"surface"`` needs ``faces``)."""
    if scale == "surface":
        pts = sample_surface(np.asarray(verts, np.float64), faces, 20000, 0)
        centre = pts.mean(0)
        return (verts - centre) / max(float(np.sqrt(((pts - centre) ** 2).sum(1).mean())), 1e-9)
    if scale != "bbox":
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    lo, hi = verts.min(0), verts.max(0)
    return (verts - (lo + hi) / 2) / max(float(np.linalg.norm(hi - lo)), 1e-9)


def reference_primitive(shape: str, scale: str = "bbox") -> tuple[np.ndarray, np.ndarray]:
    """The training primitive ``shape`` as a fine mesh (verts, faces), normalised like the results it is compared to."""
    v, f = ground_truth_mesh(shape_object(shape), resolution=96)[:2]
    return normalised(v, f, scale), f


def reference_primitives(scale: str = "bbox") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every training primitive, normalised by ``scale``, for :func:`shape_distances`."""
    return {s: reference_primitive(s, scale) for s in SHAPES}


def yaw_turns(shape: str, step_deg: float = 5.0) -> list[np.ndarray]:
    """Rotations about Z to try for ``shape``: its symmetry period about Z sampled every ``step_deg``."""
    period = 90.0 if shape == "cube" else step_deg  # sphere, cone and torus are symmetric about Z
    out = []
    for deg in np.arange(0.0, period, step_deg):
        a = np.radians(deg)
        out.append(np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]]))
    return out


def squared_up(verts: np.ndarray, step_deg: float = 1.0) -> np.ndarray:
    """``verts`` turned about Z to the yaw (within 90 degrees) of their smallest horizontal bounding rectangle."""
    v = np.asarray(verts, dtype=np.float64)
    xy = v[:, :2] - v[:, :2].mean(0)
    a = np.radians(np.arange(0.0, 90.0, step_deg))
    rot = np.stack([np.stack([np.cos(a), -np.sin(a)], 1), np.stack([np.sin(a), np.cos(a)], 1)], 1)  # [K, 2, 2]
    turned = np.einsum("kij,nj->kni", rot, xy)
    area = np.prod(turned.max(1) - turned.min(1), axis=1)
    return np.concatenate([v[:, :2] @ rot[int(np.argmin(area))].T, v[:, 2:]], axis=1)


def shape_distance(verts: np.ndarray, faces: np.ndarray, prim: tuple[np.ndarray, np.ndarray], shape: str,
                   scale: str = "bbox") -> float:
    """Symmetric Chamfer distance (% of the unit size of ``scale``) to a primitive normalised the same way: the
    result squared up and normalised once per turn, minimised over Z turns within the primitive's symmetry."""
    v = squared_up(verts)
    return min(100 * chamfer_meshes((normalised(v @ r.T, faces, scale), faces), prim, n=20000,
                                    normalise_by=None)["symmetric"] for r in yaw_turns(shape))


def shape_distances(verts: np.ndarray, faces: np.ndarray, prims: dict[str, tuple[np.ndarray, np.ndarray]],
                    scale: str = "bbox") -> dict[str, float]:
    """:func:`shape_distance` to each primitive of ``prims`` (from :func:`reference_primitives` with ``scale``)."""
    return {s: shape_distance(verts, faces, prim, s, scale) for s, prim in prims.items()}


def dominant_colour(mesh: TexturedMesh) -> tuple[str, list[float]]:
    cams = preview_cameras(np.asarray(mesh.verts), n_views=8, size=96)
    img = render_textured(mesh, cams, bg=1.0).reshape(-1, 3).numpy()
    obj = img[np.abs(img - 1.0).max(axis=1) > 0.05]
    if len(obj) == 0:
        return "none", [1.0, 1.0, 1.0]
    med = np.median(obj, axis=0)
    chroma = med / max(med.sum(), 1e-6)
    refs = {k: np.asarray(v) / sum(v) for k, v in COLOURS.items()}
    return min(refs, key=lambda k: float(np.linalg.norm(chroma - refs[k]))), med.round(3).tolist()


def has_hole(verts: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the vertical line through the bounding-box centre misses every triangle."""
    c = (verts.min(0) + verts.max(0)) / 2
    tri = verts[faces][:, :, :2] - c[:2]  # projected to XY, relative to the centre
    a, b, cc = tri[:, 0], tri[:, 1], tri[:, 2]

    def cross(p, q):
        return p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]

    d1, d2, d3 = cross(a, b), cross(b, cc), cross(cc, a)
    inside = ((d1 >= 0) & (d2 >= 0) & (d3 >= 0)) | ((d1 <= 0) & (d2 <= 0) & (d3 <= 0))
    return not bool(inside.any())


def primitives() -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The four primitives normalised both ways (:data:`SCALES`), for :func:`judge`."""
    return {scale: reference_primitives(scale) for scale in SCALES}


def judge(glb: Path, prims: dict) -> dict:
    """Shape (nearest primitive, with the distances) and dominant colour of a result file.

    ``shape`` is judged with both normalised by their surfaces (``"surface"``); ``shape_bbox`` by their bounding
    boxes (the sweeps' judge before the surface one). A boxy result with a rim along its top edges is a cube by its
    surface and can be a sphere by its box: the rim sets the box, and the cube inside is scaled down to fit it.
    """
    v, f, uv, tex = read_mesh(glb)
    colour, med = dominant_colour(TexturedMesh(v, f, uv, None, tex))
    dist = shape_distances(v, f, prims["surface"], "surface")
    box = shape_distances(v, f, prims["bbox"], "bbox")
    return {"shape": min(dist, key=dist.get), "shape_bbox": min(box, key=box.get), "colour": colour,
            "median_rgb": med, "chamfer_pct": {k: round(x, 2) for k, x in dist.items()},
            "chamfer_pct_bbox": {k: round(x, 2) for k, x in box.items()}}


def source_mesh(shape: str, colour: str = "red") -> TexturedMesh:
    """The primitive at scale 3 and offset (5, -2, 1), unwrapped, in one flat colour."""
    v, f = ground_truth_mesh(shape_object(shape), resolution=40)[:2]
    v = (v * 3.0 + np.array([5.0, -2.0, 1.0])).astype(np.float32)
    v2, f2, uv, _ = unwrap(v, f)
    tex = np.empty((64, 64, 3), np.uint8)
    tex[...] = np.round(np.asarray(COLOURS[colour]) * 255)
    return TexturedMesh(v2, f2, uv, None, tex)
