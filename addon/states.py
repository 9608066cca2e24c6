"""What the add-on keeps on disk between jobs: generated objects' engine states (bounded by a size cap, referenced
relative to the .blend where possible) and results that could not be imported."""

import os
import shutil
import time
from pathlib import Path

import bpy

from .deps import states_dir


def folder_size(folder: Path) -> int:
    """Bytes in the files directly in ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0


def prune_states(folder: Path, max_bytes: int, room: int = 0) -> list[Path]:
    """Delete the oldest ``*.safetensors`` in ``folder`` until they take at most ``max_bytes - room``; returns what
    was deleted. Objects whose state is gone are still edited, from their mesh."""
    files = sorted((p for p in folder.glob("*.safetensors") if p.is_file()), key=lambda p: p.stat().st_mtime) \
        if folder.is_dir() else []
    total = sum(p.stat().st_size for p in files)
    removed = []
    for p in files:
        if total <= max(0, max_bytes - room):
            break
        size = p.stat().st_size
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        removed.append(p)
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
    dest = states_dir(prefs).parent / "failed-imports" / time.strftime("%Y%m%d-%H%M%S")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for p in (src, src.with_suffix(".mtl"), src.with_suffix(".png")):
            if p.is_file() and (p == src or src.suffix.lower() == ".obj"):
                shutil.move(os.fspath(p), os.fspath(dest / p.name))
    except OSError:
        return ""
    return str(dest / src.name)


def clear_states(prefs) -> tuple[int, int]:
    """Delete every saved state: ``(files, bytes)`` removed."""
    folder = states_dir(prefs)
    size = folder_size(folder)
    removed = prune_states(folder, 0)
    return len(removed), size - folder_size(folder)
