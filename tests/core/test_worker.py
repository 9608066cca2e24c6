"""The worker process (``python -m dreamsmith.core.app.worker``): one job in, JSON lines out, no bpy.

A job over the pipe yields progress lines and then exactly one "done"; a bad job yields exactly one
"error" line and exit code 2; SIGTERM, a closed stdin or a dead parent stop a running job and leave no result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import deadline, wait_for_exit
from test_generate import TINY
from test_models import build_pixel_prior

from dreamsmith.core.meshio import read_mesh

WORKER = [sys.executable, "-m", "dreamsmith.core.app.worker"]
POSIX = pytest.mark.skipif(os.name != "posix", reason="signals and re-parenting are POSIX behaviour")


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    return build_pixel_prior(tmp_path_factory.mktemp("prior") / "pixel")


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1")


def _job(out: Path, model, **extra) -> dict:
    return {"command": "generate", "prompt": "a red cube", "preset": "draft", "seed": 2, "model": str(model),
            "device": "cpu", "out": str(out), "config": TINY, **extra}


def _lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def test_job_over_the_pipe_streams_progress_then_done(pixel, tmp_path):
    out, preview = tmp_path / "res" / "cube.glb", tmp_path / "res" / "cube.png"
    job = _job(out, pixel, preview=str(preview))
    job["config"] = TINY | {"coarse": TINY["coarse"] | {"steps": 2}, "mesh": TINY["mesh"] | {"steps": 1}}
    job = json.dumps(job, indent=1)  # several lines: still one job
    proc = subprocess.run(WORKER, input=job, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _lines(proc.stdout)  # every stdout line is JSON (library chatter went to stderr)
    progress = [m for m in lines if m["type"] == "progress"]
    assert {m["stage"] for m in progress} >= {"coarse", "mesh"}
    coarse = [m for m in progress if m["stage"] == "coarse"]
    assert coarse[-1]["step"] == coarse[-1]["total"] == 2
    assert all(isinstance(m["loss"], float) and m["eta"] >= 0 for m in coarse)
    assert [m["type"] for m in lines if m["type"] in ("done", "error")] == ["done"] and lines[-1]["type"] == "done"
    assert lines[-1]["out"] == str(out) and lines[-1]["summary"]["faces"] > 0
    assert {"type": "preview", "path": str(preview)} in lines and preview.is_file()
    verts, faces, uvs, tex = read_mesh(out)
    assert len(faces) > 0 and uvs is not None and tex is not None
    assert sorted(p.name for p in out.parent.iterdir()) == ["cube.glb", "cube.png"]  # no temp or progress files


@pytest.mark.parametrize("case", ["not_json", "unknown_key", "no_out", "wrong_type"])
def test_bad_job_is_one_error_line_and_exit_2(tmp_path, case):
    out = tmp_path / "res" / "x.glb"
    job = {"command": "generate", "prompt": "a red cube", "out": str(out)}
    text, expect = {
        "not_json": ("{not json", "not valid JSON"),
        "unknown_key": (json.dumps(job | {"promt": "typo"}), "job.promt"),
        "no_out": (json.dumps(job | {"out": ""}), "no 'out' path"),
        "wrong_type": (json.dumps(job | {"seed": "seven"}), "job.seed"),
    }[case]
    proc = subprocess.run(WORKER, input=text, capture_output=True, text=True, timeout=120, env=_env())
    lines = _lines(proc.stdout)
    errors = [m for m in lines if m["type"] == "error"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and lines[-1] is errors[0] and expect in errors[0]["message"]
    assert errors[0]["kind"] in ("InputError", "ConfigError")
    assert not (tmp_path / "res").exists()


def _start(tmp_path: Path, pixel: Path, **extra) -> tuple[subprocess.Popen, Path]:
    """A worker on a job that runs far longer than the test, once it has said its first line (it has read the job
    and started); returns it and its result path."""
    out = tmp_path / "res" / "x.glb"
    job = _job(out, pixel, **extra)
    job["config"] = TINY | {"coarse": TINY["coarse"] | {"steps": 100000}}
    proc = subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=_env())
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()
    with deadline(60, proc.kill):
        assert proc.stdout.readline(), "the worker wrote nothing"
    return proc, out


@POSIX
def test_sigterm_stops_a_running_job_and_leaves_no_result(pixel, tmp_path):
    proc, out = _start(tmp_path, pixel)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 2
    proc.stdin.close()
    last = _lines(proc.stdout.read())[-1]
    assert last["type"] == "error" and last["kind"] == "Cancelled" and "nothing was written" in last["message"]
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_closing_stdin_stops_a_job_that_watches_it(pixel, tmp_path):
    proc, out = _start(tmp_path, pixel, watch_stdin=True)
    proc.stdin.close()  # what happens to the pipe when Blender dies, on every platform
    assert proc.wait(timeout=60) == 2
    last = _lines(proc.stdout.read())[-1]
    assert last["kind"] == "Cancelled" and "closed the connection" in last["message"]
    assert not out.exists()


def test_a_stop_that_an_import_turns_into_its_own_error_is_still_a_stop(monkeypatch, tmp_path):
    """Closing stdin while the job still imports numpy raised ImportError from the interrupted import (exit 1, "a
    bug"): what the user asked for was a stop."""
    import io

    from dreamsmith.core.app import worker

    def interrupted(job, emit, stopper):
        stopper.request("the parent closed the connection")
        raise ImportError("Error importing numpy: PyCapsule_Import could not import module 'datetime'")

    monkeypatch.setattr(worker, "run_job", interrupted)
    out = io.StringIO()
    job = _job(tmp_path / "x.glb", tmp_path / "no-prior")
    assert worker.main(io.StringIO(json.dumps(job) + "\n"), out) == 2
    last = _lines(out.getvalue())[-1]
    assert last["kind"] == "Cancelled" and "closed the connection" in last["message"]


INTERMEDIATE = r"""
import subprocess, sys
p = subprocess.Popen([sys.executable, "-m", "dreamsmith.core.app.worker"], stdin=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, text=True)  # its stdout is this one's: the test reads both
p.stdin.write(sys.argv[1] + "\n")
p.stdin.flush()
print(p.pid, flush=True)
sys.stdin.read()  # until the test kills this process (or dies itself)
"""


@POSIX
def test_worker_exits_when_its_parent_dies(pixel, tmp_path):
    out = tmp_path / "res" / "x.glb"
    job = _job(out, pixel)
    job["config"] = TINY | {"coarse": TINY["coarse"] | {"steps": 100000}}
    parent = subprocess.Popen([sys.executable, "-c", INTERMEDIATE, json.dumps(job)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    said = []  # the parent's line (the worker's pid, a number) and the worker's first line (a JSON object)
    with deadline(60, lambda: os.killpg(parent.pid, signal.SIGKILL)):
        while len(said) < 2 and (line := parent.stdout.readline()):
            said.append(json.loads(line))
    worker = next(x for x in said if isinstance(x, int))
    assert any(isinstance(x, dict) for x in said), "the worker wrote nothing"
    ended = False
    try:
        parent.kill()
        parent.wait()
        ended = wait_for_exit(worker, timeout=30)
        assert ended, "the worker outlived its parent"
    finally:
        if not ended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
    rest, _ = parent.communicate(timeout=30)  # the pipe ends with the worker
    last = _lines(rest)[-1]
    assert last["kind"] == "Cancelled" and "parent process is gone" in last["message"]
    assert not out.exists()


HOLD_LOCK = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
             "print('held', flush=True); sys.stdin.readline()")


def _kernel_cache(root: Path) -> Path:
    """The folder the worker's kernels use under ``DREAMSMITH_KERNEL_CACHE=root`` (same sources, same torch)."""
    from dreamsmith.kernels import cpu_build

    return root / cpu_build.library_path().parent.name


def test_kernel_locks_never_hang_a_job(pixel, tmp_path):
    """A built cache with lock files left by a killed builder does not stop a job (it once waited forever); a live
    builder is waited for as a "kernels" stage with its message, at most DREAMSMITH_KERNEL_WAIT_S, then the
    references run and the job finishes."""
    from dreamsmith.kernels import cpu_build

    if cpu_build.cpu_ops() is None:
        pytest.skip(f"the C++ kernels are not built here ({cpu_build.reason()})")
    quick = TINY | {"coarse": TINY["coarse"] | {"steps": 1}, "mesh": TINY["mesh"] | {"steps": 1}}
    runs = {}
    for case in ("stale", "live"):
        cache = _kernel_cache(tmp_path / case)
        cache.mkdir(parents=True)
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(cache / "build.lock")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        if case == "stale":  # the built library, and the locks of a builder that was killed
            shutil.copy2(cpu_build.library_path(), cache / cpu_build.library_path().name)
            holder.kill()
            (cache / "lock").write_text("")
        env = dict(_env(), DREAMSMITH_KERNEL_CACHE=str(tmp_path / case), DREAMSMITH_KERNEL_WAIT_S="2")
        job = json.dumps(_job(tmp_path / case / "x.glb", pixel) | {"config": quick})
        try:
            runs[case] = subprocess.run(WORKER, input=job, capture_output=True, text=True, timeout=300, env=env)
        finally:
            holder.kill()
            holder.wait()
    for case, proc in runs.items():
        assert proc.returncode == 0 and _lines(proc.stdout)[-1]["type"] == "done", (case, proc.stderr[-3000:])
    stale, live = (_lines(runs[c].stdout) for c in ("stale", "live"))
    assert not [m for m in stale if m.get("stage") == "kernels"]
    assert "pure-PyTorch reference" not in runs["stale"].stderr  # the built C++ kernels ran
    waits = [m for m in live if m.get("stage") == "kernels"]
    assert waits and all(m["message"] == cpu_build.WAIT_MESSAGE and m["total"] == 2 for m in waits)
    assert "still building the kernels after 2 s" in runs["live"].stderr  # then the references ran, and said why


NO_TORCH = r"""
import builtins, io, json, sys
real = builtins.__import__
def without_torch(name, *args, **kwargs):  # a Python where torch is not installed (Blender's own, say)
    if name == "torch" or name.startswith("torch."):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return real(name, *args, **kwargs)
builtins.__import__ = without_torch
from dreamsmith.core.app import worker
out = io.StringIO()
code = worker.main(io.StringIO(json.dumps({"command": "generate", "prompt": "a red cube", "out": sys.argv[1]})), out)
print(json.dumps({"code": code, "lines": out.getvalue()}))
"""


def test_a_python_without_the_engine_is_told_to_install_it_not_to_report_a_bug(tmp_path):
    out = tmp_path / "res" / "x.glb"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(out)], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    error = [m for m in _lines(report["lines"]) if m["type"] == "error"]
    assert report["code"] == 2 and len(error) == 1 and error[0]["kind"] == "EngineMissing", proc.stdout
    assert "Install Engine" in error[0]["message"] and "'torch'" in error[0]["message"]
    assert "bug" not in error[0]["message"] and "Traceback" not in proc.stderr and not out.parent.exists()
