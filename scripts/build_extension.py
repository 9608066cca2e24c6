"""Build the Blender extension package with Blender's own builder: ``dist/dreamsmith-<version>.zip``.

    python scripts/build_extension.py [--out-dir dist] [--blender PATH] [--split-platforms]

Blender's extension builder decides what goes in (the manifest's ``[build] paths_exclude_pattern``, which keeps
Blender's default exclusions of dot-files and ``.blend1`` backups) and validates the manifest and the files while
it builds. It runs from the ``bpy`` module of this Python (``pip install bpy``: its ``blender_ext.py``, the code
behind ``blender --command extension build``) or, with ``--blender``, from a Blender executable. The zip is built
in a temporary folder and moved into place, so a failed build leaves no partial file. Install it with
``blender --command extension install-file -r user_default -e dist/dreamsmith-<version>.zip`` or Edit >
Preferences > Get Extensions > Install from Disk.

``validate(zip)`` runs Blender's validator on a built zip (what ``blender --command extension validate`` runs).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_manifest(root: Path = ROOT) -> dict:
    """The parsed ``blender_manifest.toml`` of ``root``."""
    with open(root / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)


def extension_tool(blender: str = "") -> list[str]:
    """The command that runs Blender's extension tool: ``blender --command extension`` for an executable, else the
    ``blender_ext.py`` shipped inside this Python's ``bpy`` module (run with this Python)."""
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    spec = importlib.util.find_spec("bpy")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    found = [f for r in roots for f in glob.glob(os.path.join(r, "*", "scripts", "addons_core", "bl_pkg", "cli",
                                                              "blender_ext.py"))]
    if not found:
        raise SystemExit("Blender's extension builder was not found: install the bpy module (pip install bpy) or "
                         "pass --blender PATH to a Blender 4.2+ executable.")
    return [sys.executable, found[0]]


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"Blender's extension tool failed ({' '.join(cmd[-3:])}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def build(out_dir: Path, root: Path = ROOT, blender: str = "", split_platforms: bool = False) -> Path:
    """Build with Blender's builder into ``out_dir`` (atomically) and return the zip's path (the first one with
    ``split_platforms``)."""
    manifest = read_manifest(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        cmd = [*extension_tool(blender), "build", "--source-dir", str(root), "--output-dir", tmp]
        _run(cmd + (["--split-platforms"] if split_platforms else []))
        built = sorted(Path(tmp).glob("*.zip"))
        if not built:
            raise SystemExit("Blender's extension builder wrote no zip.")
        for zip_path in built:
            os.replace(zip_path, out_dir / zip_path.name)
    target = out_dir / built[0].name
    expected = f"{manifest['id']}-{manifest['version']}"
    if not target.name.startswith(expected):
        raise SystemExit(f"Unexpected package name {target.name} (expected {expected}*.zip).")
    return target


def validate(package: Path, blender: str = "") -> str:
    """Blender's validator on a built zip; raises SystemExit with its report when it refuses the package."""
    return _run([*extension_tool(blender), "validate", str(package)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(ROOT / "dist"), help="where the zip goes (default: dist/)")
    parser.add_argument("--blender", default="", help="a Blender executable (default: the bpy module's builder)")
    parser.add_argument("--split-platforms", action="store_true", help="one zip per platform of the manifest")
    args = parser.parse_args(argv)
    target = build(Path(args.out_dir), blender=args.blender, split_platforms=args.split_platforms)
    validate(target, args.blender)
    with zipfile.ZipFile(target) as zf:
        n = len(zf.namelist())
    print(f"wrote {target} ({n} files, {target.stat().st_size / 1e3:.0f} kB), validated by Blender")
    return 0


if __name__ == "__main__":
    sys.exit(main())
