"""Whether the engine can run a job, at a glance, and what a job would cost: the sidebar's first lines.

The Python that runs the engine (:func:`.settings.interpreter`) is asked once, in a background thread, with a
short child process: which of the engine's packages it lacks, and on which device it would compute (CUDA with the
GPU's name and memory, Apple MPS, or the CPU). Blender's own Python without the packages is known at once (no
process: :func:`.settings.blender_python_ready`). The answer is cached per interpreter until the engine is installed,
repaired or removed (:func:`.engine_install.changes`).

A job's cost comes from the engine itself (``python -m dreamsmith estimate ... --json``,
:mod:`dreamsmith.core.runtime.estimate`: the same figures the command line prints and the worker checks), also in
a background thread, cached per (interpreter, job, preset, device, models).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass

from ..protocol import DEPENDENCIES
from .engine_install import changes, installing, status_text
from .settings import blender_python_ready, engine_env, interpreter

#: Asks an interpreter what it has: the packages it lacks and the device torch would use.
PROBE = "; ".join((
    "import importlib, importlib.util, json, sys",
    "names = json.loads(sys.argv[1])",
    "missing = [n for n in names if importlib.util.find_spec(n) is None]",
    "info = {'python': sys.version.split()[0], 'missing': missing, 'device': 'cpu', 'name': 'CPU', 'memory_gb': 0}",
    "torch = None if 'torch' in missing else importlib.import_module('torch')",
    "cuda = torch is not None and torch.cuda.is_available()",
    "mps = torch is not None and not cuda and getattr(torch.backends, 'mps', None) is not None "
    "and torch.backends.mps.is_available()",
    "props = torch.cuda.get_device_properties(0) if cuda else None",
    "info.update({'device': 'cuda', 'name': props.name, 'memory_gb': round(props.total_memory / 2**30)} if cuda "
    "else {'device': 'mps', 'name': 'Apple MPS'} if mps else {})",
    "print('DREAMSMITH ' + json.dumps(info))",
))
PROBE_TIMEOUT_S = 120.0


@dataclass
class EngineStatus:
    """What the sidebar's first line says.

    Attributes:
        state: ``ready`` (a job can run), ``checking`` (being asked; a job may start), ``missing`` (the engine's
            packages are not there), ``installing`` or ``failed`` (the interpreter does not run).
        text: The line itself: "Ready: CUDA, NVIDIA GeForce RTX 4070 (12 GB)", "Engine Not Installed", ...
        reason: Why a job cannot start, for greyed buttons ("" when it can).
        device: ``cuda``, ``mps`` or ``cpu`` once known.
    """

    state: str
    text: str
    reason: str = ""
    device: str = ""


class _Asked:
    """Answers and the questions under way (module state: draw code has no instance)."""

    lock = threading.Lock()
    probes: dict[str, dict] = {}
    estimates: dict[tuple, dict] = {}
    running: set = set()
    changes: int = 0  # the engine environment's changes these answers were given after


_asked = _Asked()


def forget() -> None:
    """Drop every cached answer (after an install, repair or uninstall, or a change of interpreter)."""
    with _asked.lock:
        _asked.probes.clear()
        _asked.estimates.clear()


def _forget_if_changed() -> None:
    """Forget the answers when the engine environment changed since they were given (installed, repaired,
    removed: :func:`.engine_install.changes`)."""
    if _asked.changes != changes():
        forget()
        _asked.changes = changes()


def _ask(key, store: dict, command: list[str], parse, env: dict | None = None) -> None:
    """Run ``command`` in a thread once for ``key`` and put ``parse(stdout, returncode)`` (or an error) in ``store``."""
    with _asked.lock:
        if key in store or key in _asked.running:
            return
        _asked.running.add(key)

    def work() -> None:
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
            answer = parse(proc.stdout, proc.returncode, proc.stderr)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        with _asked.lock:
            store[key] = answer
            _asked.running.discard(key)
        from .redraw import redraw

        redraw("VIEW_3D")

    threading.Thread(target=work, name="dreamsmith-ask", daemon=True).start()


def _parse_probe(stdout: str, code: int, stderr: str) -> dict:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("DREAMSMITH ")), None)
    if line is None:
        last = (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
        return {"error": last[:300]}
    return json.loads(line[len("DREAMSMITH "):])


def probe(python: str, env: dict | None = None, wait: float = 0.0) -> dict | None:
    """What ``python`` has (see :data:`PROBE`), or None while it is being asked; ``wait``: seconds to wait for it."""
    _ask(python, _asked.probes, [python, "-c", PROBE, json.dumps([name for name, _ in DEPENDENCIES])],
         _parse_probe, env)
    if wait > 0:
        _wait_for(lambda: python in _asked.probes, wait)
    return _asked.probes.get(python)


def _wait_for(done, seconds: float) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def status(prefs, wait: float = 0.0) -> EngineStatus:
    """The engine's status for the sidebar and the operators' polls (cheap: cached after the first ask)."""
    _forget_if_changed()
    if installing():
        return EngineStatus("installing", f"Installing the Engine: {status_text() or 'starting'}",
                            "The engine is being installed; wait for it to finish.")
    python = interpreter(prefs)
    if not os.path.isfile(python):
        return EngineStatus("failed", f"The engine's Python does not exist: {python}",
                            "Set an existing Python in the add-on preferences, or clear it to use the installed "
                            "engine.")
    if python == sys.executable and not blender_python_ready():
        return EngineStatus("missing", "Engine Not Installed",
                            "Install the engine first (Install Engine, at the top of this panel).")
    info = probe(python, engine_env(prefs), wait)
    if info is None:
        return EngineStatus("checking", "Checking the engine...")
    if "error" in info:
        return EngineStatus("failed", f"The engine's Python does not run: {info['error']}",
                            "Fix the Python in the add-on preferences, or remove it to use the installed engine.")
    if info["missing"]:
        names = info["missing"]
        missing = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        return EngineStatus("missing", f"Engine Not Installed (missing {missing})",
                            "Install the engine first (Install Engine, at the top of this panel).")
    if info["device"] == "cuda":
        return EngineStatus("ready", f"Ready: CUDA, {info['name']} ({info['memory_gb']} GB)", device="cuda")
    if info["device"] == "mps":
        return EngineStatus("ready", "Ready: Apple MPS", device="mps")
    return EngineStatus("ready", "Ready: CPU", device="cpu")


def _parse_estimate(stdout: str, code: int, stderr: str) -> dict:
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), None)
    if line is None:
        last = (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
        return {"error": last[:300]}
    return json.loads(line)


def estimate(prefs, job: str, preset: str, model: str = "", fine_model: str = "", wait: float = 0.0) -> dict | None:
    """The engine's estimate of a job (``python -m dreamsmith estimate --json``), or None while it is asked."""
    from .models import engine_command

    _forget_if_changed()
    python = interpreter(prefs)
    key = (python, job, preset, prefs.device, model, fine_model)
    args = ["estimate", job, "--preset", preset, "--device", prefs.device, "--json"]
    if model:
        args += ["--model", model]
    if fine_model and job != "retexture":
        args += ["--fine-model", fine_model]
    _ask(key, _asked.estimates, engine_command(python, *args), _parse_estimate, engine_env(prefs))
    if wait > 0:
        _wait_for(lambda: key in _asked.estimates, wait)
    return _asked.estimates.get(key)
