"""Where the engine environment lives and the commands that build it: plain functions, no bpy.

The engine gets its own environment, built by `uv <https://docs.astral.sh/uv/>`_ under one short folder per user
(the *root*)::

    <root>/tools    uv itself, installed once by Blender's pip (``pip install --target``), pinned to UV_VERSION
    <root>/python   the standalone Python that uv downloads (independent of Blender's)
    <root>/cache    uv's download cache
    <root>/env      the engine environment: ``uv venv``, then ``uv pip install -r engine.lock --torch-backend auto``
    <root>/install.log

``engine.lock`` (shipped in the extension root, made by ``scripts/lock_engine.py``) pins every package; uv's
``--torch-backend auto`` picks the torch build for the machine's driver (CUDA with an NVIDIA GPU on Windows and
Linux, the MPS-capable build on macOS, else CPU). A marker file at the root says the folder is ours: repair and
uninstall remove nothing else. Every command is an argument list, never a shell string.

``addon/deps.py`` runs these commands from Blender; this module only knows paths and argument lists, so that tests
can check them for every platform without Blender.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

#: uv release that builds the environment (the same pin as constraints.txt).
UV_VERSION = "0.13.9"
#: The engine environment's Python version (uv downloads a standalone build of it).
PYTHON_VERSION = "3.11"
#: The lock file, in the extension root.
LOCK_NAME = "engine.lock"
#: Overrides the root folder (tests, studios with a shared drive).
ROOT_ENV = "DREAMSMITH_ENGINE_ROOT"
#: Names a uv binary to use instead of installing one (developers, tests).
UV_ENV = "DREAMSMITH_UV"
#: File at the root that marks the folder as made by Dreamsmith.
ROOT_MARKER = ".dreamsmith-engine"
#: File inside the environment written once the install has succeeded.
INSTALLED_MARKER = "dreamsmith-installed.json"
LOG_NAME = "install.log"
#: Windows' classic path limit (MAX_PATH), which parts of the toolchain still respect.
WINDOWS_MAX_PATH = 260
#: About the longest path inside the environment (a header shipped in torch's Windows wheel).
LONGEST_ENV_FILE = ("Lib/site-packages/torch/include/ATen/ops/"
                    "_fused_moving_avg_obs_fq_helper_compositeexplicitautograd_dispatch.h")
#: The same file in uv's cache (``archive-v0/<id>/``), which is unpacked before it is linked into the env.
LONGEST_CACHE_FILE = "archive-v0/" + "x" * 21 + "/torch/include/ATen/ops/" + LONGEST_ENV_FILE.rsplit("/", 1)[1]


def _pure(platform: str, path: str | PurePath) -> PurePath:
    return PureWindowsPath(path) if platform == "win32" else PurePosixPath(path)


def default_root(platform: str, environ: Mapping[str, str], home: str | PurePath) -> PurePath:
    """The root folder for ``platform`` (``sys.platform``): short on Windows, where paths are limited.

    Windows ``%LOCALAPPDATA%\\dsm``; macOS ``~/Library/Application Support/dreamsmith``; elsewhere
    ``$XDG_DATA_HOME/dreamsmith`` or ``~/.local/share/dreamsmith``. ``DREAMSMITH_ENGINE_ROOT`` wins everywhere.
    """
    if environ.get(ROOT_ENV):
        return _pure(platform, environ[ROOT_ENV])
    home = _pure(platform, home)
    if platform == "win32":
        base = environ.get("LOCALAPPDATA")
        return (PureWindowsPath(base) if base else home / "AppData" / "Local") / "dsm"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "dreamsmith"
    xdg = environ.get("XDG_DATA_HOME")
    return (PurePosixPath(xdg) if xdg and os.path.isabs(xdg) else home / ".local" / "share") / "dreamsmith"


@dataclass(frozen=True)
class EngineLayout:
    """The folders and files of one engine root.

    Attributes:
        root: The root folder (see :func:`default_root`).
        platform: ``sys.platform`` of the machine the paths are for.
    """

    root: PurePath
    platform: str

    @property
    def env(self) -> PurePath:
        """The engine environment."""
        return self.root / "env"

    @property
    def tools(self) -> PurePath:
        """Where uv is installed."""
        return self.root / "tools"

    @property
    def cache(self) -> PurePath:
        """uv's cache (downloads, unpacked wheels)."""
        return self.root / "cache"

    @property
    def pythons(self) -> PurePath:
        """Standalone Pythons downloaded by uv."""
        return self.root / "python"

    @property
    def log(self) -> PurePath:
        """The last installation's full output."""
        return self.root / LOG_NAME

    @property
    def marker(self) -> PurePath:
        """The file that marks the root as ours."""
        return self.root / ROOT_MARKER

    @property
    def installed_marker(self) -> PurePath:
        """Written into the environment when an installation has succeeded."""
        return self.env / INSTALLED_MARKER

    @property
    def python(self) -> PurePath:
        """The engine environment's interpreter."""
        if self.platform == "win32":
            return self.env / "Scripts" / "python.exe"
        return self.env / "bin" / "python"

    def owned(self) -> tuple[PurePath, ...]:
        """What Dreamsmith creates under the root (and may remove again)."""
        return (self.env, self.tools, self.cache, self.pythons, self.log)

    def uv_candidates(self) -> tuple[PurePath, ...]:
        """Where ``pip install --target <tools> uv`` puts the uv binary."""
        if self.platform == "win32":
            return (self.tools / "Scripts" / "uv.exe", self.tools / "bin" / "uv.exe")
        return (self.tools / "bin" / "uv",)


def longest_path(layout: EngineLayout) -> int:
    """The length of the longest path an installation is expected to write (environment or uv's cache)."""
    sep = "\\" if layout.platform == "win32" else "/"
    env = str(layout.env) + sep + LONGEST_ENV_FILE.replace("/", sep)
    cache = str(layout.cache) + sep + LONGEST_CACHE_FILE.replace("/", sep)
    return max(len(env), len(cache))


def path_problem(layout: EngineLayout) -> str:
    """Why the root cannot hold the environment ("" when it can): on Windows, paths over 260 characters."""
    if layout.platform != "win32":
        return ""
    length = longest_path(layout)
    if length < WINDOWS_MAX_PATH:
        return ""
    return (f"The engine folder {layout.root} is too long for Windows: torch's files would need paths of {length} "
            f"characters (limit {WINDOWS_MAX_PATH - 1}). Set the environment variable {ROOT_ENV} to a short folder, "
            "e.g. C:\\dsm, and restart Blender.")


def uv_bootstrap_command(python: str, layout: EngineLayout, extra: Sequence[str] = ()) -> list[str]:
    """Blender's pip installs uv (one wheel, ~20 MB, pinned) into ``<root>/tools``."""
    return [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-deps",
            "--only-binary", ":all:", "--upgrade", "--target", str(layout.tools), *extra, f"uv=={UV_VERSION}"]


def venv_command(uv: str, layout: EngineLayout, python_request: str = PYTHON_VERSION) -> list[str]:
    """``uv venv``: the environment, with a uv-managed Python when ``python_request`` is a version."""
    managed = [] if any(c in python_request for c in "/\\") else ["--managed-python"]
    return [uv, "venv", "--no-config", "--no-project", "--python", python_request, *managed, str(layout.env)]


def packages_command(uv: str, layout: EngineLayout, lock: str, torch_backend: str = "auto",
                     extra: Sequence[str] = ()) -> list[str]:
    """``uv pip install`` of the lock into the environment, with the torch build for this machine."""
    backend = ["--torch-backend", torch_backend] if torch_backend else []
    return [uv, "pip", "install", "--no-config", "--python", str(layout.python), "-r", lock, *backend, *extra]


def uv_environment(layout: EngineLayout, base: Mapping[str, str]) -> dict[str, str]:
    """The environment variables of uv's processes: its cache and Pythons under the root, plain output."""
    env = {k: v for k, v in base.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "CONDA_PREFIX")}
    env.update(UV_CACHE_DIR=str(layout.cache), UV_PYTHON_INSTALL_DIR=str(layout.pythons), NO_COLOR="1",
               PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8")
    return env


_STATUS_PREFIXES = ("Using ", "Creating ", "Resolved ", "Prepared ", "Installed ", "Uninstalled ", "Downloading ",
                    "Downloaded ", "Collecting ", "Successfully ", "Installing ", "error:", "ERROR:", "warning:")


def status_line(line: str) -> str | None:
    """The line as the UI's status, or None when it says nothing a user follows (a package list, a blank)."""
    line = line.strip()
    if line.startswith(_STATUS_PREFIXES):
        return line[:160]
    return None


def error_summary(lines: Sequence[str]) -> str:
    """uv's or pip's error from its last output lines: the last ``error:`` line with the cause after it."""
    lines = [ln.strip() for ln in lines if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lower().startswith("error:"):
            cause = next((ln for ln in lines[i + 1:] if ln.startswith(("cause:", "Caused by:", "╰─▶"))), "")
            return " ".join(filter(None, [lines[i], cause]))[:300]
    return lines[-1][:300] if lines else ""


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def canonical_name(name: str) -> str:
    """PEP 503 normalised package name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, set[str]]:
    """``name==version`` lines of a requirements-style file (lock or constraints): canonical name -> versions."""
    pins: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins.setdefault(canonical_name(match.group(1)), set()).add(match.group(2))
    return pins


def requirement_name(requirement: str) -> str:
    """The canonical package name of a requirement like ``scikit-image>=0.21``."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical_name(match.group(0))


def root_from_environment() -> Path:
    """The root for this machine (``DREAMSMITH_ENGINE_ROOT`` or :func:`default_root`)."""
    import sys

    return Path(default_root(sys.platform, os.environ, Path.home()))
