"""The add-on in a real bpy (each script runs in a subprocess so that bpy stays out of the test process).

Registration is symmetric and leaves no timers or handlers; Generate in background mode waits for the worker
and adds one textured object; bad input, a missing model or a killed worker raise a readable RuntimeError and
change nothing; the interactive path (timer) imports the result, and disabling the add-on mid-job stops it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from processes import wait_for_exit

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

# A few steps only: a strong start blob, so that there is an object to mesh (the draft's weak blob needs its
# 400 steps to grow one).
TINY = {"coarse": {"steps": 2, "field": {"grid": {"n_levels": 4, "log2_hashmap_size": 12, "finest_resolution": 32},
                                         "blob_density": 5.0, "blob_radius": 0.4},
                   "occupancy": {"resolution": 16}, "volume": {"n_samples_per_ray": 48}},
        "coarse_sds": {"render_size": 16, "views": {"views_per_step": 2}},
        "mesh": {"steps": 1, "render_size": 16, "dmtet": {"resolution": 16}},
        "mesh_sds": {"views": {"views_per_step": 2}}, "bake": {"texture_size": 32}}

COMMON = r"""
import json, os, sys, time
import bpy
import addon_utils
ARGS = json.loads(sys.argv[1])
REPORT = {}

def counts():
    return [len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.images)]

class Layout:  # records what a panel or page draws
    def __init__(self, log): self.log, self.enabled = log, True
    def __getattr__(self, name):
        def call(*args, **kw):
            self.log.append([name] + [a for a in args if isinstance(a, str)] + [kw.get("text", "")])
            return Layout(self.log)
        return call

def job_dirs():
    return sorted(n for n in os.listdir(bpy.app.tempdir) if n.startswith("dreamsmith-job-"))

def handlers():
    h = bpy.app.handlers
    return {n: len(getattr(h, n)) for n in dir(h) if isinstance(getattr(h, n), list)}

def draw_panels():
    # what the sidebar draws: every Dreamsmith panel that polls true, top to bottom, into one log
    from types import SimpleNamespace
    from dreamsmith.addon import panels
    log = []
    for cls in panels.PANELS:
        if issubclass(cls, bpy.types.Panel) and cls.poll(bpy.context):
            cls.draw(SimpleNamespace(layout=Layout(log)), bpy.context)
    return log

def generate(**kw):
    try:
        return str(bpy.ops.dreamsmith.generate(**kw))
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc)

def drive(timer, follow, done=lambda: False, limit=300.0):
    # What Blender's timer loop does (module mode never runs it): call ``timer`` until it returns None or ``done()``;
    # between calls, wait for the followed process's next line (``follow()``: its wait, None when there is none).
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:
        if timer() is None:
            return
        wait = follow()
        if wait is not None:
            wait(max(0.0, min(1.0, deadline - time.monotonic())))

def run_jobs(done=lambda: False, limit=300.0):
    # the add-on's job timer, woken by the running job's messages
    from dreamsmith.addon import running
    drive(running.job_timer, lambda: running.job_state.job and running.job_state.job.wait_for_message, done, limit)
"""

REGISTER = COMMON + r"""
from types import SimpleNamespace
NAMES = ["DREAMSMITH_OT_generate", "DREAMSMITH_OT_cancel", "DREAMSMITH_OT_check_setup", "DREAMSMITH_PT_main",
         "DREAMSMITH_OT_install_dependencies", "DREAMSMITH_OT_retexture", "DREAMSMITH_OT_edit"]
before = handlers()
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import CLASSES, panels, running
REPORT["registered"] = [hasattr(bpy.types, n) for n in NAMES] + [c.is_registered for c in CLASSES]
REPORT["prefs"] = bpy.context.preferences.addons["dreamsmith"].preferences.python_path
REPORT["scene_prop"] = bpy.context.scene.dreamsmith.preset
REPORT["generate_poll"] = bpy.ops.dreamsmith.generate.poll()

from dreamsmith.addon.engine_status import status, estimate
from dreamsmith.addon.preferences import get_preferences
REPORT["status"] = status(get_preferences(), wait=120).text  # the engine's Python asked once, in a thread
for preset in ("draft", "standard"):
    estimate(get_preferences(), "generate", preset, wait=120)
draw = draw_panels

REPORT["idle"] = draw()
bpy.context.scene.dreamsmith.preset = "standard"
REPORT["standard"] = draw()
bpy.context.scene.dreamsmith.preset = "draft"
props = bpy.context.window_manager.dreamsmith_job
props.command, props.estimate = "generate", ""
running.job_state.started = time.monotonic() - 60.0
from dreamsmith.addon.properties import apply_message
apply_message(props, {"type": "progress", "stage": "coarse", "step": 30, "total": 120, "loss": 0.1, "eta": 75.0})
running.job_state.job = object()  # what the panel sees while a job runs
running.job_state.number, running.job_state.of = 2, 3
running.job_state.queue = [running.Pending(running.Request({"prompt": "a green cone", "seed": 5}, "", {}))]
REPORT["running"] = draw()
running.job_state.queue, running.job_state.number, running.job_state.of = [], 0, 0
apply_message(props, {"type": "progress", "stage": "kernels", "step": 12, "total": 300, "loss": None, "eta": 288.0,
                      "message": "waiting for another Dreamsmith process to finish building its kernels"})
REPORT["kernels_wait"] = draw()
REPORT["generate_poll_running"] = bpy.ops.dreamsmith.generate.poll()
running.job_state.job = None
from dreamsmith.addon import engine_install
engine_install._install.active, engine_install._install.status = True, "Installing torch"  # as an install leaves it
REPORT["generate_poll_installing"] = bpy.ops.dreamsmith.generate.poll()
REPORT["installing"] = draw()
engine_install._install.active = False
bpy.app.timers.register(running.job_timer, first_interval=100.0)  # as a running job leaves it
during = handlers()
REPORT["during"] = {k: during[k] - before[k] for k in during if during[k] != before[k]}
addon_utils.disable("dreamsmith", default_set=True)
REPORT["unregistered"] = [hasattr(bpy.types, n) for n in NAMES] + [c.is_registered for c in CLASSES]
REPORT["timer"] = bpy.app.timers.is_registered(running.job_timer)
REPORT["handlers_same"] = handlers() == before
REPORT["scene_prop_gone"] = not hasattr(bpy.types.Scene, "dreamsmith")
REPORT["wm_prop_gone"] = not hasattr(bpy.types.WindowManager, "dreamsmith_job")
print("REPORT " + json.dumps(REPORT))
"""

BACKGROUND = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
before = counts()
REPORT["result"] = generate(prompt="a red cube", preset="draft", seed=4, model=ARGS["model"],
                            config_json=json.dumps(ARGS["tiny"]))
obj = bpy.data.objects.get("a red cube")
REPORT["delta"] = [a - b for a, b in zip(counts(), before)]
REPORT["mesh"] = obj is not None and obj.type == "MESH" and len(obj.data.polygons) > 0
REPORT["uv"] = [l.name for l in obj.data.uv_layers]
imgs = [n.image for s in obj.material_slots for n in s.material.node_tree.nodes if n.type == "TEX_IMAGE"]
REPORT["packed"] = [i.packed_file is not None for i in imgs]
REPORT["props"] = {k: obj[k] for k in obj.keys() if k.startswith("dreamsmith_")}
REPORT["location"] = list(obj.location)
REPORT["active"] = bpy.context.view_layer.objects.active == obj and obj.select_get()
REPORT["job_dirs"] = job_dirs()
REPORT["idle_again"] = bpy.ops.dreamsmith.generate.poll() and not bpy.context.window_manager.dreamsmith_job.running
state = obj.get("dreamsmith_state", "")
REPORT["state_kept"] = bool(state) and os.path.isfile(state) and state.startswith(os.environ["BLENDER_USER_RESOURCES"])
from dreamsmith.addon import running
seen = {}
run_job = running.WorkerJob.start
def spy(job):
    seen.update(job.job)
    return run_job(job)
running.WorkerJob.start = spy
REPORT["edit"] = bpy.ops.dreamsmith.edit(prompt="a blue cube", model=ARGS["model"],
                                         config_json=json.dumps(ARGS["edit"])) == {"FINISHED"}
REPORT["edit_from_state"] = seen.get("state") == state and len(seen.get("world") or []) == 16
REPORT["state_prop_dropped"] = "dreamsmith_state" not in obj
print("REPORT " + json.dumps(REPORT))
"""

BAD = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.device = "cpu"
tiny = json.dumps(ARGS["tiny"])
before = counts()
REPORT["empty"] = generate(prompt="   ", model=ARGS["model"], config_json=tiny)
REPORT["bad_json"] = generate(prompt="a red cube", model=ARGS["model"], config_json="[1, 2")
REPORT["missing_model"] = generate(prompt="a red cube", model="nobody/no-such-model-xyz", config_json=tiny)
prefs.python_path = ARGS["dying"]
REPORT["killed"] = generate(prompt="a red cube", model=ARGS["model"], config_json=tiny)
prefs.python_path = ARGS["dying"] + "-does-not-exist"
REPORT["no_python"] = generate(prompt="a red cube", model=ARGS["model"], config_json=tiny)
REPORT["unchanged"] = counts() == before
REPORT["job_dirs"] = job_dirs()
REPORT["message"] = bpy.context.window_manager.dreamsmith_job.message
prefs.python_path = ""
REPORT["idle_again"] = bpy.ops.dreamsmith.generate.poll()
print("REPORT " + json.dumps(REPORT))
"""

INTERACTIVE = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
from dreamsmith.addon import running
seen = []
handle = running.handle_message
running.handle_message = lambda msg, props: (seen.append(msg), handle(msg, props))
values = {"prompt": "a blue torus", "negative_prompt": "blurry", "preset": "draft", "seed": 1}
before = counts()
job = running.start_job(bpy.context, values, ARGS["model"], ARGS["tiny"], interactive=True)
REPORT["timer_registered"] = bpy.app.timers.is_registered(running.job_timer)
REPORT["poll_while_running"] = bpy.ops.dreamsmith.generate.poll()
run_jobs(limit=240)
if bpy.app.timers.is_registered(running.job_timer):  # timers do not fire in module mode: it stays registered
    bpy.app.timers.unregister(running.job_timer)
obj = bpy.data.objects.get("a blue torus")
REPORT["stages"] = sorted({m.get("stage") for m in seen if m["type"] == "progress"})
REPORT["imported"] = obj is not None and obj.get("dreamsmith_negative_prompt") == "blurry"
preview = bpy.data.images.get(running.PREVIEW_IMAGE)
REPORT["preview"] = preview is not None and preview.packed_file is not None and preview.size[0] > 0
REPORT["message"] = bpy.context.window_manager.dreamsmith_job.message
REPORT["job_gone"] = running.current_job() is None and not job.work_dir.exists()

# a long job cancelled with the Cancel operator after its first live preview: nothing added, nothing left
after_first = counts()
long = dict(ARGS["tiny"], coarse=dict(ARGS["tiny"]["coarse"], steps=100000, preview_every=5))
bpy.data.images.remove(bpy.data.images[running.PREVIEW_IMAGE])
after_first = counts()
job = running.start_job(bpy.context, values, ARGS["model"], long, interactive=True)
run_jobs(lambda: bpy.data.images.get(running.PREVIEW_IMAGE) is not None, limit=120)
REPORT["cancel_saw_preview"] = bpy.data.images.get(running.PREVIEW_IMAGE) is not None
REPORT["cancel_result"] = str(sorted(bpy.ops.dreamsmith.cancel()))
REPORT["cancel_worker_ended"] = job.proc.poll() is not None and not job.work_dir.exists()
REPORT["cancel_unchanged"] = counts() == after_first
REPORT["cancel_message"] = bpy.context.window_manager.dreamsmith_job.message
REPORT["cancel_idle"] = bpy.ops.dreamsmith.generate.poll() and not bpy.app.timers.is_registered(running.job_timer)

# a long job, then the add-on is disabled while it runs: worker ended, folder removed, scene unchanged
seen.clear()
job = running.start_job(bpy.context, values, ARGS["model"], long, interactive=True)
run_jobs(lambda: bool(seen) and seen[-1].get("stage") == "coarse", limit=120)
REPORT["was_training"] = job.proc.poll() is None and seen[-1].get("stage") == "coarse"
addon_utils.disable("dreamsmith", default_set=True)
REPORT["worker_ended"] = job.proc.poll() is not None
REPORT["folder_removed"] = not job.work_dir.exists()
REPORT["timer_after"] = bpy.app.timers.is_registered(running.job_timer)
REPORT["unchanged"] = counts() == after_first and after_first[0] == before[0] + 1
print("REPORT " + json.dumps(REPORT))
"""

EXIT = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
from dreamsmith.addon import running
long = dict(ARGS["tiny"], coarse=dict(ARGS["tiny"]["coarse"], steps=100000))
values = {"prompt": "a red cube", "negative_prompt": "", "preset": "draft", "seed": 0}
job = running.start_job(bpy.context, values, ARGS["model"], long, interactive=True)
run_jobs(lambda: bpy.context.window_manager.dreamsmith_job.stage == "coarse", limit=120)
print("WORKER " + json.dumps({"pid": job.proc.pid, "dir": str(job.work_dir),
                              "stage": bpy.context.window_manager.dreamsmith_job.stage}), flush=True)
os._exit(0)  # Blender quits (or crashes) without any clean-up
"""

#: The first lines of a stand-in interpreter (a shell script): it answers the add-on's question about what it has
#: (:data:`dreamsmith.addon.engine_status.PROBE`) as an engine on a CPU would.
ANSWERS_PROBE = """#!/bin/sh
case "$2" in "import importlib, importlib.util"*)
  echo 'DREAMSMITH {"python": "3.11", "missing": [], "device": "cpu", "name": "CPU", "memory_gb": 0}'; exit 0;;
esac
"""

DYING_WORKER = ANSWERS_PROBE + """
read line
echo '{"type": "progress", "stage": "coarse", "step": 1, "total": 10, "loss": null, "eta": null}'
echo "fake engine: out of luck" >&2
kill -9 $$
"""


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("dreamsmith_test_models", REPO / "tests" / "core" / "test_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_pixel_prior(tmp_path_factory.mktemp("prior") / "pixel")


def _run(script: str, args: dict, timeout: float = 300) -> dict:
    import tempfile

    user = tempfile.mkdtemp(prefix="dreamsmith-test-user-")  # Blender's user folders (states, prefs) stay here
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDER_USER_RESOURCES=user)
    try:
        proc = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    finally:
        shutil.rmtree(user, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(json.loads(lines[-1][len("REPORT "):]), _stdout=proc.stdout)


def test_register_unregister_is_symmetric_and_panel_draws():
    rep = _run(REGISTER, {})
    assert len(rep["registered"]) >= 17 and all(rep["registered"]) and not any(rep["unregistered"])
    assert rep["prefs"] == "" and rep["scene_prop"] == "draft" and rep["scene_prop_gone"] and rep["wm_prop_gone"]
    assert rep["status"] == "Ready: CPU"  # the first line: the engine can run a job, on this machine's CPU
    assert rep["generate_poll"] and rep["generate_poll_running"] and not rep["generate_poll_installing"]
    bar = [c for c in rep["installing"] if c[0] == "progress"]  # the install's progress, and a way to stop it
    assert bar and bar[0][-1] == "Installing: Installing torch"
    assert ["operator", "dreamsmith.cancel_install", ""] in rep["installing"]
    assert not rep["timer"] and rep["handlers_same"]
    assert rep["during"] == {"load_post": 1, "load_pre": 1}  # the file-load handlers, and nothing else
    idle, running = rep["idle"], rep["running"]
    assert ["label", "Ready: CPU"] in idle and idle.index(["label", "Ready: CPU"]) == 0
    assert ["prop", "prompt", "Prompt"] in idle and ["operator", "dreamsmith.generate", "Generate"] in idle
    assert ["operator", "dreamsmith.retexture", ""] in idle and ["operator", "dreamsmith.edit", ""] in idle
    assert not any(c[0] == "progress" for c in idle)
    assert ["label", "Models: Demo (16 shapes, offline)"] in idle  # the draft's prior, shipped, on disk
    assert any(c[0] == "label" and "cube, sphere, cone or torus" in c[-1] for c in idle)
    assert not any("GPU" in c[-1] for c in idle)
    estimates = [c[-1] for c in idle if c[0] == "label" and c[-1].startswith("Estimate: ")]
    assert estimates and estimates[0].startswith("Estimate: about ") and "on CPU" in estimates[0]
    labels = [c[-1] for c in rep["standard"] if c[0] == "label"]  # SD 2.1-base, not downloaded in the test
    text = " ".join(labels)
    assert "not on this computer: Stable" in text and "5.2 GB" in text, labels
    assert "Needs a GPU with about 16 GB of memory." in labels
    assert "days" in text and "use a GPU" in text and "--force" in text  # standard on a CPU: refused, in words
    bars = [c for c in running if c[0] == "progress"]
    assert bars and bars[0][-1] == "Coarse Shape 30/120 - 11:00 left"  # the whole job: a quarter of its first third
    assert ["label", "Job 2 of 3"] in running and ["operator", "dreamsmith.generate", "Add to Queue"] in running
    assert any(c[0] == "label" and c[-1] == "3. Generate 'a green cone', seed 5" for c in running)
    assert ["operator", "dreamsmith.cancel", ""] in running
    assert ["operator", "dreamsmith.cancel", "Cancel All"] in running
    assert not any(c[0] == "label" and "Waiting" in c[-1] for c in running)
    wait = rep["kernels_wait"]  # a worker waiting on another process's kernel build: a stage with its message
    assert [c[-1] for c in wait if c[0] == "progress"][0].startswith("Preparing Kernels 12/300")
    words = " ".join(c[-1] for c in wait if c[0] == "label")  # long lines wrap to the sidebar's width
    assert "Waiting for another Dreamsmith process to finish building its kernels" in words


def test_background_generate_adds_one_textured_object(prior):
    edit = {"coarse": {"steps": 2}, "mesh": {"steps": 2}, "bake": {"texture_size": 32}}
    rep = _run(BACKGROUND, {"model": str(prior), "tiny": TINY, "edit": edit})
    assert rep["result"] == "{'FINISHED'}", rep["result"]
    assert rep["delta"] == [1, 1, 1, 1] and rep["mesh"] and rep["uv"] == ["UVMap"] and rep["packed"] == [True]
    props = rep["props"]
    assert props["dreamsmith_prompt"] == "a red cube" and props["dreamsmith_seed"] == 4
    assert props["dreamsmith_preset"] == "draft" and props["dreamsmith_coarse_model"] == str(prior)
    assert props["dreamsmith_fine_model"] == str(prior) and props["dreamsmith_negative_prompt"] == ""
    assert rep["location"] == [1.0, 2.0, 3.0] and rep["active"]
    assert rep["job_dirs"] == [] and rep["idle_again"]
    assert rep["state_kept"] and rep["edit"] and rep["edit_from_state"] and rep["state_prop_dropped"]
    stages = [m.group(1) for m in re.finditer(r"^Dreamsmith: (.+?) \d+/\d+", rep["_stdout"], re.M)]
    assert stages.count("Coarse Shape") == 1 and stages.count("Mesh and Texture") == 1, rep["_stdout"][-2000:]
    assert len(stages) == len([(i, s) for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s])


@pytest.mark.skipif(os.name != "posix", reason="the dying fake interpreter is a shell script")
def test_bad_input_and_dying_worker_raise_readable_errors_and_change_nothing(prior, tmp_path):
    dying = tmp_path / "dying-python"
    dying.write_text(DYING_WORKER)
    dying.chmod(0o755)
    rep = _run(BAD, {"model": str(prior), "tiny": TINY, "dying": str(dying)})
    assert rep["empty"] == ("RuntimeError: Error: The prompt is empty: describe the object to make (e.g. 'a red "
                            "cube'), or set Source to Picture and choose one.\n")
    assert rep["bad_json"].startswith("RuntimeError: Error: The config overrides are not a JSON object")
    assert rep["missing_model"].startswith("RuntimeError: Error: The model 'nobody/no-such-model-xyz' was not found")
    killed = rep["killed"]
    assert killed.startswith("RuntimeError: Error: The engine stopped unexpectedly (it was killed by signal 9)")
    assert "fake engine: out of luck" in killed and str(dying) in killed
    assert rep["no_python"].startswith("RuntimeError: Operator bpy.ops.dreamsmith.generate.poll() Set an existing "
                                       "Python in the add-on preferences")  # greyed, with what to do
    assert rep["unchanged"] and rep["job_dirs"] == [] and rep["idle_again"]
    assert rep["message"].startswith("The engine stopped unexpectedly")


def test_interactive_job_imports_via_timer_and_disable_stops_a_running_job(prior):
    rep = _run(INTERACTIVE, {"model": str(prior), "tiny": TINY})
    assert rep["timer_registered"] and rep["poll_while_running"]  # another Generate now waits in the queue
    assert {"load", "coarse", "mesh"} <= set(rep["stages"])
    assert rep["imported"] and rep["preview"] and rep["message"] == "Added 'a blue torus'." and rep["job_gone"]
    assert rep["cancel_saw_preview"] and rep["cancel_result"] == "['FINISHED']" and rep["cancel_worker_ended"]
    assert rep["cancel_unchanged"] and rep["cancel_idle"] and "cancel" in rep["cancel_message"].lower()
    assert rep["was_training"] and rep["worker_ended"] and rep["folder_removed"] and not rep["timer_after"]
    assert rep["unchanged"]


LIST_BLEND = r"""
import json, sys
import bpy
bpy.ops.wm.open_mainfile(filepath=json.loads(sys.argv[1])["blend"])
objs = {o.name: [round(c, 3) for c in o.location] for o in bpy.data.objects}
packed = [i.packed_file is not None for i in bpy.data.images]
print("REPORT " + json.dumps({"objects": objs, "packed": packed}))
"""


def test_batch_script_writes_one_object_per_prompt_and_reports_failures(prior, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n# a comment\n\n" + "x" * 1200 + "\na blue torus\n")
    blend = tmp_path / "batch.blend"
    cmd = [sys.executable, str(REPO / "tools" / "batch_generate.py"), "--prompts", str(prompts), "--out", str(blend),
           "--model", str(prior), "--config", json.dumps(TINY), "--python", sys.executable, "--device", "cpu",
           "--spacing", "3"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # one prompt failed
    assert "FAILED 'xxxx" in proc.stderr and "under 1000" in proc.stderr
    summary = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")][-1][8:])
    assert [r["ok"] for r in summary] == [True, False, True]
    rep = _run(LIST_BLEND, {"blend": str(blend)})
    assert rep["objects"] == {"a red cube": [0.0, 0.0, 0.0], "a blue torus": [6.0, 0.0, 0.0]}
    assert rep["packed"] == [True, True]
    assert not list(tmp_path.glob(".*.tmp.blend"))
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "batch_generate.py"), "--prompts",
                          str(tmp_path / "none.txt"), "--out", str(blend)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "No prompts file" in bad.stderr


@pytest.mark.skipif(os.name != "posix", reason="waits on the worker's pid (a pidfd or kqueue)")
def test_worker_dies_when_blender_exits(prior):
    proc = subprocess.run([sys.executable, "-c", EXIT, json.dumps({"model": str(prior), "tiny": TINY})],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("WORKER ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads(lines[-1][len("WORKER "):])
    assert info["stage"] == "coarse"
    assert wait_for_exit(info["pid"], timeout=30), "the worker outlived Blender"


RETEXTURE = COMMON + r"""
import numpy as np
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
tiny = json.dumps(ARGS["config"])
edit_tiny = json.dumps(ARGS["edit_config"])

def verts(obj):
    a = np.zeros(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", a)
    return a

def uvs(obj, name):
    layer = obj.data.uv_layers[name]
    a = np.zeros(len(layer.data) * 2, np.float32)
    layer.data.foreach_get("uv", a)
    return a

def colour(mat):
    img = [n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"][0]
    px = np.array(img.pixels[:], np.float32).reshape(-1, 4)[:, :3]
    px = px[px.max(axis=1) > 0.05]
    return img.packed_file is not None, np.median(px, axis=0).round(3).tolist()

def call(op, **kw):
    try:
        return str(sorted(op(**kw)))
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc)

# an artist's cube: own UVs and material, scaled, rotated, moved
bpy.ops.mesh.primitive_cube_add(size=2.0, location=(3.0, -1.0, 0.5), rotation=(0.3, 0.0, 0.7))
cube = bpy.context.active_object
cube.scale = (1.5, 0.7, 1.0)
old = bpy.data.materials.new("Artist material")
cube.data.materials.append(old)
v0, uv0 = verts(cube), uvs(cube, "UVMap")
REPORT["ok"] = call(bpy.ops.dreamsmith.retexture, prompt="a green cube", preset="draft", model=ARGS["model"],
                    config_json=tiny)
REPORT["verts_same"] = bool(np.array_equal(verts(cube), v0))
REPORT["uv_same"] = bool(np.array_equal(uvs(cube, "UVMap"), uv0)) and [l.name for l in cube.data.uv_layers] == ["UVMap"]
mat = cube.material_slots[0].material
REPORT["new_material"] = mat.name
REPORT["old_kept"] = "Artist material" in bpy.data.materials and bpy.data.materials["Artist material"].use_fake_user
REPORT["packed"], REPORT["rgb"] = colour(mat)
uvnode = [n for n in mat.node_tree.nodes if n.type == "UVMAP"][0]
REPORT["uv_node"] = uvnode.uv_map
REPORT["prop"] = cube.get("dreamsmith_retexture_prompt")

# a mesh without UVs gets a new UV map; several objects in one call
bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, location=(-3, 0, 0))
ball = bpy.context.active_object
ball.data.uv_layers.remove(ball.data.uv_layers[0]) if ball.data.uv_layers else None
vb = verts(ball)
for o in bpy.context.view_layer.objects:
    o.select_set(o in (ball, cube))
REPORT["two"] = call(bpy.ops.dreamsmith.retexture, prompt="a blue sphere", preset="draft", model=ARGS["model"],
                     config_json=tiny)
REPORT["ball_uv"] = [l.name for l in ball.data.uv_layers]
REPORT["ball_verts_same"] = bool(np.array_equal(verts(ball), vb))
REPORT["ball_rgb"] = colour(ball.material_slots[0].material)[1]
REPORT["cube_again"] = cube.material_slots[0].material.name

# bad selections change nothing
before = counts()
bpy.ops.object.camera_add()
cam = bpy.context.active_object
before = counts()
REPORT["camera"] = call(bpy.ops.dreamsmith.retexture, prompt="a green cube", model=ARGS["model"], config_json=tiny)
REPORT["camera_edit"] = call(bpy.ops.dreamsmith.edit, prompt="a green cube", model=ARGS["model"],
                             config_json=edit_tiny)
for o in bpy.context.view_layer.objects:
    o.select_set(False)
REPORT["empty"] = call(bpy.ops.dreamsmith.retexture, prompt="a green cube", model=ARGS["model"], config_json=tiny)
me = bpy.data.meshes.new("points")
me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [])
pts = bpy.data.objects.new("points", me)
bpy.context.scene.collection.objects.link(pts)
pts.select_set(True)
bpy.context.view_layer.objects.active = pts
before = counts()
REPORT["no_faces"] = call(bpy.ops.dreamsmith.retexture, prompt="a green cube", model=ARGS["model"], config_json=tiny)
REPORT["no_faces_edit"] = call(bpy.ops.dreamsmith.edit, prompt="a green cube", model=ARGS["model"],
                               config_json=edit_tiny)
bpy.ops.mesh.primitive_cube_add(location=(0, -4, 0))
sculpted = bpy.context.active_object
layers = [l.name for l in sculpted.data.uv_layers]
bpy.ops.object.mode_set(mode="EDIT")
before_modes = counts()
REPORT["edit_mode"] = [call(bpy.ops.dreamsmith.retexture, prompt="a green cube", model=ARGS["model"],
                            config_json=tiny),
                       call(bpy.ops.dreamsmith.edit, prompt="a green cube", model=ARGS["model"],
                            config_json=edit_tiny)]
REPORT["edit_mode_kept"] = [sculpted.mode, [l.name for l in sculpted.data.uv_layers] == layers,
                            counts() == before_modes]
bpy.ops.object.mode_set(mode="OBJECT")
cube_mesh = sculpted.data
bpy.data.objects.remove(sculpted)
bpy.data.meshes.remove(cube_mesh)
REPORT["bad_unchanged"] = counts() == before
REPORT["job_dirs"] = job_dirs()

# edit: a sphere becomes something else, its old mesh kept; or a new object
bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(0, 4, 0))
sphere = bpy.context.active_object
old_mesh = sphere.data.name
n_obj = len(bpy.data.objects)
REPORT["edit"] = call(bpy.ops.dreamsmith.edit, prompt="a blue cube", preset="draft", model=ARGS["model"],
                      config_json=edit_tiny)
REPORT["edit_new_data"] = sphere.data.name != old_mesh and old_mesh in bpy.data.meshes
REPORT["edit_old_fake"] = bpy.data.meshes[old_mesh].use_fake_user
REPORT["edit_same_count"] = len(bpy.data.objects) == n_obj
bb = np.array([sphere.matrix_world @ v.co for v in sphere.data.vertices])
REPORT["edit_centre"] = ((bb.min(0) + bb.max(0)) / 2).round(2).tolist()
REPORT["edit_new_obj"] = call(bpy.ops.dreamsmith.edit, prompt="a blue cube", preset="draft", model=ARGS["model"],
                              config_json=edit_tiny, as_new_object=True)
REPORT["edit_added"] = len(bpy.data.objects) - n_obj
REPORT["job_dirs_end"] = job_dirs()
print("REPORT " + json.dumps(REPORT))
"""

RETEX_TINY = {"mesh": {"steps": 40}, "bake": {"texture_size": 64}}
EDIT_TINY = {"coarse": {"steps": 40}, "mesh": {"steps": 10}, "bake": {"texture_size": 64}}


def test_retexture_and_edit_operators_on_artist_objects(tmp_path):
    toy = REPO / "assets" / "demo_prior"
    rep = _run(RETEXTURE, {"model": str(toy), "config": RETEX_TINY, "edit_config": EDIT_TINY}, timeout=900)
    assert rep["ok"] == "['FINISHED']", rep["ok"]
    assert rep["verts_same"] and rep["uv_same"] and rep["old_kept"] and rep["packed"]
    assert rep["new_material"].startswith("Dreamsmith: a green cube") and rep["uv_node"] == "UVMap"
    r, g, b = rep["rgb"]
    assert g > 1.5 * max(r, b), rep["rgb"]
    assert rep["prop"] == "a green cube"
    assert rep["two"] == "['FINISHED']" and rep["ball_uv"] == ["Dreamsmith UV"] and rep["ball_verts_same"]
    r, g, b = rep["ball_rgb"]
    assert b > 1.5 * max(r, g), rep["ball_rgb"]
    assert rep["cube_again"].startswith("Dreamsmith: a blue sphere")
    # poll() reflects the selection: no mesh selected / active, and Blender says why
    assert "Select the mesh objects" in rep["camera"] and "Make a mesh object active" in rep["camera_edit"]
    assert "Select the mesh objects" in rep["empty"]
    assert all("Object Mode" in m for m in rep["edit_mode"]), rep["edit_mode"]
    assert rep["edit_mode_kept"] == ["EDIT", True, True]  # refused: still editing, no stray layer, nothing added
    assert "no faces" in rep["no_faces"] and "no faces" in rep["no_faces_edit"]
    assert rep["bad_unchanged"] and rep["job_dirs"] == []
    assert rep["edit"] == "['FINISHED']" and rep["edit_new_data"] and rep["edit_old_fake"] and rep["edit_same_count"]
    assert np.allclose(rep["edit_centre"], [0, 4, 0], atol=0.3)
    assert rep["edit_new_obj"] == "['FINISHED']" and rep["edit_added"] == 1 and rep["job_dirs_end"] == []


UNDO = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
from dreamsmith.addon import running

def run_interactive(**kw):
    running.start_job(bpy.context, {"prompt": kw.pop("prompt"), "negative_prompt": "", "preset": "draft",
                                      "seed": 0}, ARGS["model"], kw.pop("config"), interactive=True, **kw)
    run_jobs(limit=300)
    if bpy.app.timers.is_registered(running.job_timer):
        bpy.app.timers.unregister(running.job_timer)
    return bpy.context.window_manager.dreamsmith_job.message

bpy.ops.mesh.primitive_cube_add()
cube = bpy.context.active_object
cube.data.materials.append(bpy.data.materials.new("Artist material"))
name = cube.name  # "Cube.001" beside the startup file's cube (undo makes Python references stale)
bpy.ops.ed.undo_push(message="before")
n = len(bpy.data.objects)
REPORT["generate"] = run_interactive(prompt="a red cube", config=ARGS["tiny"])
REPORT["added"] = len(bpy.data.objects) - n
bpy.ops.ed.undo()
REPORT["after_undo_generate"] = len(bpy.data.objects) - n
REPORT["retexture"] = run_interactive(prompt="a green cube", config=ARGS["retex"], command="retexture",
                                      targets=[name])
REPORT["material"] = bpy.data.objects[name].material_slots[0].material.name
bpy.ops.ed.undo()
REPORT["after_undo_material"] = bpy.data.objects[name].material_slots[0].material.name
print("REPORT " + json.dumps(REPORT))
"""


def test_each_result_is_one_undo_step(prior):
    rep = _run(UNDO, {"model": str(REPO / "assets" / "demo_prior"), "tiny": TINY,
                      "retex": {"mesh": {"steps": 5}, "bake": {"texture_size": 32}}})
    assert rep["generate"] == "Added 'a red cube'." and rep["added"] == 1 and rep["after_undo_generate"] == 0
    assert rep["retexture"] == "Re-textured 'Cube.001'." and rep["material"].startswith("Dreamsmith: a green cube")
    assert rep["after_undo_material"] == "Artist material"
