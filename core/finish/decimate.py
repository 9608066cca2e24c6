"""A face budget: quality (quadric error) decimation by ``fast-simplification`` (a wrapper of Sven Forstmann's
Fast-Quadric-Mesh-Simplification), keeping the silhouette, before a mesh is unwrapped and baked."""

from __future__ import annotations

import numpy as np

from ..runtime.errors import InputError

#: Fewer triangles than this cannot keep a closed surface of any interest; a budget below it is refused.
MIN_FACES = 100


def check_budget(faces: int) -> int:
    """``faces`` as a face budget (0: none), or an :class:`InputError` that says what to give."""
    if faces != 0 and faces < MIN_FACES:
        raise InputError(f"A face budget of {faces} triangles cannot keep a closed surface; give at least "
                         f"{MIN_FACES} (or 0 for the full mesh).")
    return faces


def decimate(verts: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """``(verts, faces)`` with at most ``target`` triangles (the mesh itself when it already has no more).

    Raises:
        InputError: ``target`` is under :data:`MIN_FACES`, or the decimation lost the surface.
    """
    import fast_simplification

    check_budget(target)
    v, f = np.asarray(verts, np.float64), np.asarray(faces, np.int64)
    if target <= 0 or len(f) <= target:
        return v.astype(np.float32), f
    asked = target
    for _ in range(8):  # the simplifier may stop a few faces over its target: ask for a little less
        out_v, out_f = fast_simplification.simplify(v, f, target_count=asked)
        if len(out_f) <= target:
            break
        asked = max(MIN_FACES // 2, int(asked * target / len(out_f)) - 1)
    if len(out_f) > target or len(out_f) == 0:
        raise InputError(f"Decimating {len(f):,} triangles to {target:,} failed ({len(out_f):,} left); give a larger "
                         "budget.")
    used = np.unique(out_f)
    remap = np.full(len(out_v), -1, np.int64)
    remap[used] = np.arange(len(used))
    return out_v[used].astype(np.float32), remap[out_f]
