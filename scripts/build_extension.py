"""Build the Blender extension package: ``dist/dreamsmith-<version>.zip``.

    python scripts/build_extension.py [--out-dir dist]

The zip holds the repository root (the extension root) at its top level, minus what the manifest's
``[build] paths_exclude_pattern`` excludes (gitignore-style: a leading ``/`` anchors a pattern to the root, a
trailing ``/`` matches folders only, otherwise a pattern matches a file or folder name anywhere) and hidden
files and folders (names starting with a dot). It is what ``blender --command extension build`` would make, and
it installs with ``blender --command extension install-file -r user_default dist/dreamsmith-<version>.zip``
or Edit > Preferences > Get Extensions > Install from Disk.

Needs Python 3.11+ (tomllib). The zip is written under a temporary name and renamed into place, so a
failed build leaves no partial file.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def read_manifest(root: Path = ROOT) -> dict:
    """The parsed ``blender_manifest.toml`` of ``root``."""
    with open(root / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)


def is_excluded(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """Whether the root-relative POSIX path ``rel`` is excluded by ``patterns`` (or hidden)."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith("."):
        return True
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        anchored = pattern.startswith("/")
        body = pattern.strip("/")
        if dir_only and not is_dir:
            continue
        if anchored or "/" in body:
            if fnmatch.fnmatchcase(rel, body):
                return True
        elif fnmatch.fnmatchcase(name, body):
            return True
    return False


def package_files(root: Path = ROOT, patterns: list[str] | None = None) -> list[str]:
    """Root-relative POSIX paths of the files that go into the package, sorted."""
    if patterns is None:
        patterns = list(read_manifest(root).get("build", {}).get("paths_exclude_pattern", []))
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirnames[:] = sorted(d for d in dirnames if not is_excluded(prefix + d, True, patterns))
        files += [prefix + f for f in filenames if not is_excluded(prefix + f, False, patterns)]
    return sorted(files)


def build(out_dir: Path, root: Path = ROOT) -> Path:
    """Write ``<out_dir>/<id>-<version>.zip`` atomically and return its path."""
    manifest = read_manifest(root)
    for key in ("id", "version", "name", "blender_version_min"):
        if not manifest.get(key):
            raise SystemExit(f"blender_manifest.toml has no {key!r}; add it before building.")
    files = package_files(root)
    if "blender_manifest.toml" not in files or "__init__.py" not in files:
        raise SystemExit("The package would lack blender_manifest.toml or __init__.py; check paths_exclude_pattern.")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel in files:
                zf.write(root / rel, rel)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(ROOT / "dist"), help="where the zip goes (default: dist/)")
    args = parser.parse_args(argv)
    target = build(Path(args.out_dir))
    with zipfile.ZipFile(target) as zf:
        n = len(zf.namelist())
    print(f"wrote {target} ({n} files, {target.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
