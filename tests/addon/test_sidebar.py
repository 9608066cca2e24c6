"""The artist's sidebar in a real bpy (each script in a subprocess, see test_operators): ready-or-not at a glance
(a Python without the engine greys every button with the one action that fixes it), seeds and re-rolls, the queue
("2 of 3", a failed job does not stop the rest, a waiting job can be removed), the History subpanel with Recall,
Re-roll, Select and Continue, and the entries in Add > Mesh and the Object menu."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from test_operators import COMMON, TINY, _run, prior  # noqa: F401  (prior: the module's fixture)

from dreamsmith.protocol import DEPENDENCIES

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

MISSING = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon.engine_status import status
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.python_path = ARGS["bare"]  # a Python without torch or any engine package
REPORT["status"] = status(prefs, wait=60).text
REPORT["polls"] = [bpy.ops.dreamsmith.generate.poll(), bpy.ops.dreamsmith.edit.poll()]
REPORT["generate"] = generate(prompt="a red cube")
REPORT["drawn"] = draw_panels()[:6]
print("REPORT " + json.dumps(REPORT))
"""


def test_an_engine_that_is_not_installed_greys_every_button_with_what_to_do(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    rep = _run(MISSING, {"bare": str(bare / "bin" / "python")})
    assert rep["status"] == f"Engine Not Installed (missing torch, numpy and {len(DEPENDENCIES) - 2} more)"
    assert rep["polls"] == [False, False]
    assert "Install the engine first" in rep["generate"] and "bug" not in rep["generate"]
    drawn = rep["drawn"]
    assert drawn[0][0] == "label" and drawn[0][-1].startswith("Engine Not Installed")
    assert ["operator", "dreamsmith.install_dependencies", "Install Engine"] in drawn


# The add-on enabled on the CPU, as both flows start.
ENABLED = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.device = "cpu"
from dreamsmith.addon import history, running
props = bpy.context.scene.dreamsmith
tiny = json.dumps(ARGS["tiny"])
"""

FLOW = ENABLED + r"""
REPORT["random_default"] = props.random_seed

# Seeds: Random Seed (on in a new scene) draws a new seed per job and shows it; off, the sidebar's seed is used.
props.prompt, props.preset = "a red cube", "draft"
REPORT["first"] = generate(model=ARGS["model"], config_json=tiny)
first = bpy.context.active_object
REPORT["first_seed"] = [first["dreamsmith_seed"], props.seed]
REPORT["second"] = generate(model=ARGS["model"], config_json=tiny)
second = bpy.context.active_object
REPORT["second_seed"] = second["dreamsmith_seed"]
props.random_seed, props.seed = False, 1234
REPORT["fixed"] = generate(model=ARGS["model"], config_json=tiny)
REPORT["fixed_seed"] = bpy.context.active_object["dreamsmith_seed"]

# History: newest first, Recall puts the settings back, Re-roll keeps them with a new seed, Select, Continue.
REPORT["history"] = [o.name for o in history.results()]
REPORT["described"] = list(history.describe(first))
props.prompt, props.preset, props.seed = "something else", "standard", 99
REPORT["recall"] = str(bpy.ops.dreamsmith.recall(object_name=first.name))
REPORT["recalled"] = [props.prompt, props.preset, props.seed, props.random_seed]
n = len(bpy.data.objects)
REPORT["reroll"] = str(bpy.ops.dreamsmith.reroll(object_name=first.name))
rerolled = bpy.context.active_object
REPORT["rerolled"] = [len(bpy.data.objects) - n, rerolled["dreamsmith_prompt"], rerolled["dreamsmith_seed"]
                      != first["dreamsmith_seed"], rerolled["dreamsmith_seed"] == props.seed,
                      rerolled.get("dreamsmith_config") == json.dumps(ARGS["tiny"], sort_keys=True),
                      rerolled.get("dreamsmith_model") == ARGS["model"]]
REPORT["select"] = str(bpy.ops.dreamsmith.select_result(object_name=second.name))
REPORT["selected"] = bpy.context.view_layer.objects.active == second and second.select_get()
props.prompt = ""
REPORT["continue_empty"] = ""
try:
    bpy.ops.dreamsmith.continue_result(object_name=second.name)
except RuntimeError as exc:
    REPORT["continue_empty"] = str(exc)
props.prompt = "a blue cube"
old_mesh = second.data.name
REPORT["continue"] = str(bpy.ops.dreamsmith.continue_result(object_name=second.name))
REPORT["continued"] = [second.data.name != old_mesh, second["dreamsmith_prompt"], second["dreamsmith_command"]]

print("REPORT " + json.dumps(REPORT))
"""

QUEUE = ENABLED + r"""

# The queue (interactive): three jobs, the middle one fails (a model that is not there), the rest still run;
# a waiting job can be taken out.
def job(prompt, seed, model):
    return running.Pending(running.Request({"prompt": prompt, "negative_prompt": "", "preset": "draft",
                                            "seed": seed}, model, ARGS["tiny"]))
n = len(bpy.data.objects)
running.submit(bpy.context, [job("a green cone", 1, ARGS["model"]), job("a yellow cube", 2, "nobody/no-such-model"),
                             job("a blue torus", 3, ARGS["model"]), job("a red torus", 4, ARGS["model"])])
REPORT["queued"] = [running.job_state.number, running.job_state.of, [p.label for p in running.job_state.queue]]
running.remove_queued(2)  # "a red torus": never runs
REPORT["after_remove"] = running.job_state.of
seen, messages = [], []
notify = running._notify
running._notify = lambda message, error: (messages.append([message, error]), notify(message, error))

def note_number():
    if running.job_state.job is not None:
        seen.append([running.job_state.number, running.job_state.of])
    return False

run_jobs(note_number, limit=300)
REPORT["numbers"] = sorted({tuple(x) for x in seen})
REPORT["added"] = len(bpy.data.objects) - n
REPORT["messages"] = messages
REPORT["names"] = sorted(o.name for o in bpy.data.objects)
REPORT["idle"] = running.job_state.job is None and not running.job_state.queue

# Menus: Add > Mesh and Object > Dreamsmith (F3 finds operators that are in menus).
class Recorder:
    def __init__(self): self.log = []
    def separator(self): pass
    def operator(self, idname, text="", icon="NONE"): self.log.append(["operator", idname, text])
    def menu(self, idname, **kw): self.log.append(["menu", idname])
from types import SimpleNamespace
from dreamsmith.addon import panels
rec = Recorder()
for _, entry in panels.MENUS:
    entry(SimpleNamespace(layout=rec), bpy.context)
panels.DREAMSMITH_MT_object.draw(SimpleNamespace(layout=rec), bpy.context)
REPORT["menus"] = rec.log
REPORT["in_menus"] = [entry in getattr(bpy.types, menu)._dyn_ui_initialize() for menu, entry in panels.MENUS]
REPORT["labels"] = [bpy.types.DREAMSMITH_OT_edit.bl_label, bpy.types.DREAMSMITH_OT_retexture.bl_label]
print("REPORT " + json.dumps(REPORT))
"""


def test_seeds_history_and_continue(prior):  # noqa: F811 (the fixture)
    rep = _run(FLOW, {"model": str(prior), "tiny": TINY}, timeout=600)
    assert rep["random_default"] and rep["first"] == rep["second"] == rep["fixed"] == "{'FINISHED'}"
    first_seed, shown = rep["first_seed"]
    assert first_seed == shown and first_seed != rep["second_seed"]  # a new seed each time, the used one shown
    assert rep["fixed_seed"] == 1234
    assert rep["history"][:1] == ["a red cube.002"] and len(rep["history"]) == 3
    assert rep["described"][0] == "'a red cube'" and rep["described"][1].startswith(f"Draft, seed {first_seed}, ")
    assert rep["recall"] == "{'FINISHED'}" and rep["recalled"] == ["a red cube", "draft", first_seed, False]
    # a new seed, and a script's own model and overrides kept
    assert rep["reroll"] == "{'FINISHED'}" and rep["rerolled"] == [1, "a red cube", True, True, True, True]
    assert rep["select"] == "{'FINISHED'}" and rep["selected"]
    assert "Type in the sidebar's prompt" in rep["continue_empty"]
    assert rep["continue"] == "{'FINISHED'}" and rep["continued"] == [True, "a blue cube", "edit"]


def test_the_queue_runs_past_a_failure_and_the_menus_list_the_operators(prior):  # noqa: F811 (the fixture)
    rep = _run(QUEUE, {"model": str(prior), "tiny": TINY}, timeout=600)
    number, of, waiting = rep["queued"]
    assert (number, of) == (1, 4) and waiting[0] == "Generate 'a yellow cube', seed 2" and len(waiting) == 3
    assert rep["after_remove"] == 3
    assert rep["numbers"] == [[1, 3], [2, 3], [3, 3]]  # "1 of 3", "2 of 3", "3 of 3"
    assert rep["added"] == 2 and "a green cone" in rep["names"] and "a blue torus" in rep["names"]
    assert "a red torus" not in rep["names"] and rep["idle"]
    errors = [m for m, error in rep["messages"] if error]
    assert len(errors) == 1 and "no-such-model" in errors[0]  # the failure, said; the next job still ran
    assert ["operator", "dreamsmith.generate", "Dreamsmith: Generate"] in rep["menus"]
    assert ["menu", "DREAMSMITH_MT_object"] in rep["menus"]
    assert ["operator", "dreamsmith.edit", ""] in rep["menus"]
    assert ["operator", "dreamsmith.retexture", ""] in rep["menus"] and all(rep["in_menus"])
    assert rep["labels"] == ["Edit with Prompt", "Re-texture"]
