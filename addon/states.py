"""What the add-on keeps on disk between jobs: generated objects' engine states (bounded by a size cap, referenced
relative to the .blend where possible) and results that could not be imported."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import bpy

from .scene_io import PROP_PREFIX
from .settings import states_dir


def prune_states(folder: Path, max_bytes: int) -> list[tuple[Path, int]]:
    """Delete the oldest ``*.safetensors`` in ``folder`` until they take at most ``max_bytes``; returns what was
    deleted, with its size. Objects whose state is gone are still edited, from their mesh."""
    saved = [(p, p.stat()) for p in folder.glob("*.safetensors") if p.is_file()] if folder.is_dir() else []
    saved.sort(key=lambda item: item[1].st_mtime)
    total = sum(st.st_size for _, st in saved)
    removed = []
    for p, st in saved:
        if total <= max_bytes:
            break
        try:
            p.unlink()
        except OSError:
            continue
        total -= st.st_size
        removed.append((p, st.st_size))
    return removed


def state_limit_bytes(prefs) -> int:
    """The preferences' cap on saved states, in bytes."""
    return int(float(getattr(prefs, "states_limit_gb", 2.0)) * 1024**3)


def stored_path(path: str) -> str:
    """``path`` as a custom property keeps it: relative to the saved .blend (``//...``) when on the same drive."""
    if not path or not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def resolve_stored(path: str) -> str:
    """An absolute path from :func:`stored_path`'s form ("" stays "")."""
    return bpy.path.abspath(path) if path else ""


def keep_result(prefs, out: str) -> str:
    """Move a result that could not be imported (with an OBJ's .mtl and .png) out of the job folder, which is about
    to be removed, into ``failed-imports`` beside the states; returns its new path ("" if it could not be kept)."""
    src = Path(out)
    files = [src] + ([src.with_suffix(".mtl"), src.with_suffix(".png")] if src.suffix.lower() == ".obj" else [])
    parent = states_dir(prefs).parent / "failed-imports"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=parent))
        for p in files:
            if p.is_file():
                shutil.move(os.fspath(p), os.fspath(dest / p.name))
    except OSError:
        return ""
    return str(dest / src.name)


def clear_states(prefs) -> tuple[int, int]:
    """Delete every saved state: ``(files, bytes)`` removed."""
    removed = prune_states(states_dir(prefs), 0)
    return len(removed), sum(size for _, size in removed)


def job_states(prefs, command: str, target: str, job_id: str) -> tuple[str, str, list[float] | None]:
    """``(state to start from, state to save, the target's world matrix)`` of a job: a generate saves its engine
    state (as ``<job_id>.safetensors``) for later edits; an edit of an object generated here starts from its state
    while that is still on disk."""
    if command == "generate":
        folder = states_dir(prefs)
        prune_states(folder, state_limit_bytes(prefs))
        return "", str(folder / f"{job_id}.safetensors"), None
    saved = resolve_stored(str(bpy.data.objects[target].get(PROP_PREFIX + "state", ""))) if command == "edit" else ""
    if saved and os.path.isfile(saved):
        return saved, "", [v for row in bpy.data.objects[target].matrix_world for v in row]
    return "", "", None
