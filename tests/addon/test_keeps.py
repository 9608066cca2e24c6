"""The add-on keeps what it makes and never hangs: a worker that stops talking is ended with a message, a script
job has a time limit, a failed import keeps the result and says where, the job timer never raises, saved
engine states stay under their size cap (with a button to clear them), referenced relative to the .blend, and a
job running when another file is opened is cancelled with a message (never orphaned); its progress lives on the
window manager, not in the saved file."""

from __future__ import annotations

import importlib.util
import os

import pytest
from test_operators import COMMON, _run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

KEEPS = COMMON + r"""
import pathlib, tempfile
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import running, states
from dreamsmith.addon.job import Outcome, WorkerJob, build_job, make_work_dir
tmp = pathlib.Path(tempfile.mkdtemp())

def stand_in(name, body, **wait):
    # A job with a shell script standing in for the interpreter: its outcome, seconds, and whether it ended.
    python = tmp / name
    python.write_text("#!/bin/sh\n" + body + "\n")
    python.chmod(0o755)
    job = WorkerJob(build_job("generate", tmp / "o.glb", {"prompt": "a cube"}), str(python), make_work_dir(str(tmp)))
    job.start()
    t0 = time.monotonic()
    outcome = job.wait(**wait)
    seconds, ended = time.monotonic() - t0, job.proc.poll() is not None
    job.cleanup()
    return [outcome.kind, outcome.message, seconds, ended]

# 1. A worker that never says a word (a "python" that only sleeps) is ended after the silence limit.
REPORT["hung"] = stand_in("hung-python", "exec sleep 120", silence=2.0)
# 2. A script job over its time limit is ended too (the worker talks, but takes too long).
REPORT["limit"] = stand_in("talking-python", "while true; do echo '{\"type\": \"heartbeat\"}'; sleep 0.2; done",
                           time_limit=1.5, silence=30.0)

# 3. An import that fails with any error keeps the result and says where.
work = make_work_dir(str(tmp))
result = work / "result.glb"
result.write_bytes(b"glb")
class FakeJob:
    cleaned = False
    def cleanup(self):
        FakeJob.cleaned = True
        import shutil; shutil.rmtree(work, ignore_errors=True)
def broken_import(outcome, meta):
    raise ValueError("the importer choked")
running._import = broken_import
running.job_state.job = FakeJob()
running.job_state.meta = running.RunningJob(running.Request({"prompt": "a cube", "negative_prompt": "", "seed": 0,
                                                             "preset": "draft"}, "m", {}), bpy.context.scene.name,
                                            False, False)
before = counts()
ok, message = running.finish_job(Outcome(True, out=str(result), summary={}), undo=False)
kept = message.split("kept at ")[-1].rstrip(".")
REPORT["failed_import"] = [ok, message, os.path.isfile(kept), FakeJob.cleaned, counts() == before,
                           running.job_state.job is None]

# 4. The timer never raises: a job whose poll fails is stopped and the timer ends.
class Exploding:
    outcome = None
    cancelled = []
    def poll(self):
        raise KeyError("boom")
    def cancel(self):
        Exploding.cancelled.append(True)
    def cleanup(self):
        pass
running.job_state.job = Exploding()
running.job_state.meta = None
try:
    REPORT["timer"] = [running.job_timer(), bool(Exploding.cancelled), running.job_state.job is None]
except BaseException as exc:
    REPORT["timer"] = ["raised " + repr(exc)]

# 5. Saved states stay under the cap, oldest first; a button clears them; paths relative to a saved .blend.
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
folder = states.states_dir(prefs)
folder.mkdir(parents=True, exist_ok=True)
for i in range(5):
    p = folder / f"s{i}.safetensors"
    p.write_bytes(b"x" * 1000)
    os.utime(p, (1000 + i, 1000 + i))
removed = states.prune_states(folder, 2500)
REPORT["pruned"] = [sorted(p.name for p, _ in removed), sorted(p.name for p in folder.glob("*.safetensors"))]
prefs.states_limit_gb = 0.1
REPORT["limit_bytes"] = states.state_limit_bytes(prefs)
REPORT["clear"] = str(bpy.ops.dreamsmith.clear_states())
REPORT["cleared"] = sorted(p.name for p in folder.glob("*.safetensors"))
blend = tmp / "scene.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(blend))
stored = states.stored_path(str(tmp / "states" / "a.safetensors"))
REPORT["relative"] = [stored, states.resolve_stored(stored) == str(tmp / "states" / "a.safetensors")]

# 6. Check setup: scripts wait for it; the same check runs in a thread from the UI (not shown in module mode).
from dreamsmith.addon.preferences import check_setup
prefs.python_path = sys.executable
REPORT["check"] = [str(bpy.ops.dreamsmith.check_setup()), check_setup(str(tmp / "no-python"), dict(os.environ), True)]
print("REPORT " + json.dumps(REPORT))
"""


@pytest.mark.skipif(os.name != "posix", reason="the stand-in interpreters are shell scripts")
def test_the_addon_keeps_what_it_makes_and_never_hangs():
    rep = _run(KEEPS, {}, timeout=240)
    kind, message, seconds, ended = rep["hung"]
    assert kind == "Stalled" and "stopped responding" in message and seconds < 20 and ended, rep["hung"]
    kind, message, seconds, ended = rep["limit"]
    assert kind == "Stalled" and "time limit" in message and seconds < 20 and ended, rep["limit"]
    ok, message, kept_exists, cleaned, unchanged, cleared = rep["failed_import"]
    assert not ok and "the importer choked" in message and kept_exists and cleaned and unchanged and cleared, message
    assert rep["timer"] == [None, True, True], rep["timer"]
    assert rep["pruned"] == [["s0.safetensors", "s1.safetensors", "s2.safetensors"],
                             ["s3.safetensors", "s4.safetensors"]]
    assert abs(rep["limit_bytes"] - 0.1 * 1024**3) < 1e3  # a float32 property
    assert rep["clear"] == "{'FINISHED'}" and rep["cleared"] == []
    assert rep["relative"][0].startswith("//") and rep["relative"][1], rep["relative"]
    done, (ok, message) = rep["check"]
    assert done == "{'FINISHED'}" and not ok and "Cannot run" in message, rep["check"]


LOAD = COMMON + r"""
import pathlib, tempfile
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import running
tmp = pathlib.Path(tempfile.mkdtemp())
python = tmp / "talking-python"  # a worker that talks (heartbeats) and never ends by itself
python.write_text("#!/bin/sh\nwhile true; do echo '{\"type\": \"heartbeat\"}'; sleep 0.2; done\n")
python.chmod(0o755)
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.python_path = str(python)
first = tmp / "first.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(first))
other = tmp / "other.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(other), copy=True)
in_other = counts()  # objects and meshes are what a job would add (orphan materials are not saved)
values = {"prompt": "a cube", "negative_prompt": "", "preset": "draft", "seed": 0}

def start_then(load, expected):
    job = running.start_job(bpy.context, values, "", {}, interactive=True)
    progress = bpy.context.window_manager.dreamsmith_job
    progress.stage = "coarse-stage-marker"
    saved = tmp / "while-running.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved), copy=True)
    in_file = b"coarse-stage-marker" in saved.read_bytes()
    persistent_timer = bpy.app.timers.is_registered(running.job_timer)
    load()
    progress = bpy.context.window_manager.dreamsmith_job
    return {"running_before": persistent_timer, "progress_in_file": in_file, "job": running.job_running(),
            "ended": job.proc.poll() is not None, "folder_gone": not job.work_dir.exists(),
            "message": progress.message, "error": progress.message_is_error, "running": progress.running,
            "objects": counts()[:2] == expected[:2], "counts": [counts(), expected]}

REPORT["open"] = start_then(lambda: bpy.ops.wm.open_mainfile(filepath=str(other)), in_other)
REPORT["new"] = start_then(lambda: bpy.ops.wm.read_homefile(use_empty=True), [0, 0, 0, 0])
from dreamsmith.addon import file_load
REPORT["handlers"] = [file_load.on_load_pre in bpy.app.handlers.load_pre,
                      file_load.on_load_post in bpy.app.handlers.load_post]
print("REPORT " + json.dumps(REPORT))
"""


@pytest.mark.skipif(os.name != "posix", reason="the stand-in interpreter is a shell script")
def test_a_job_is_cancelled_with_a_message_when_another_file_is_opened():
    rep = _run(LOAD, {}, timeout=120)
    for case, started_in in (("open", "first.blend"), ("new", "other.blend")):  # the second starts in the file opened
        r = rep[case]
        assert r["running_before"] and not r["progress_in_file"], r  # progress is not saved in the .blend
        assert not r["job"] and r["ended"] and r["folder_gone"] and not r["running"], r  # never orphaned
        assert "cancelled because another file was opened" in r["message"] and started_in in r["message"], r
        assert r["error"] and r["objects"], r["counts"]
    assert rep["handlers"] == [True, True]  # persistent: they survive the loads
