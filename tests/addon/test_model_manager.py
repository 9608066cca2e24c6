"""The model manager in a real bpy (Blender as a module, in a subprocess): its operators register and go away; a
download is refused without online access and otherwise runs the engine to the end (background mode) against a
local stand-in for the Hub, or is cancelled (and stopped by disabling the add-on) leaving no model on disk; Delete
removes a model of the cache the preferences name; the sign-in token reaches the Hub's own token store and neither
the saved preferences, a saved .blend, the operator's remembered properties nor Blender's output; the preferences
page draws one row per model."""

from __future__ import annotations

import importlib.util

import pytest
from test_model_store import SD, diffusers_files, fake_hub, fake_repo, hub_files  # noqa: F401 (a fixture)
from test_operators import COMMON, _run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

MANAGER = COMMON + r"""
import pathlib
os.environ.pop("HF_HUB_OFFLINE", None)  # the stand-in Hub is local
os.environ.update(HF_HOME=ARGS["hf_home"], HF_ENDPOINT=ARGS["hub"], HF_HUB_DISABLE_TELEMETRY="1")
OPS = ["refresh_models", "download_model", "cancel_download", "delete_model", "sign_in", "sign_out"]
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import models
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.cache_dir = ARGS["cache"]
system = bpy.context.preferences.system
REPORT["registered"] = [hasattr(bpy.types, "DREAMSMITH_OT_" + n) for n in OPS]

def draw():
    log = []
    models.draw_models(Layout(log), bpy.context)
    return log

# Downloads only with Blender's online access and the preference.
system.use_online_access = False
REPORT["poll_offline"] = bpy.ops.dreamsmith.download_model.poll()
system.use_online_access, prefs.allow_downloads = True, False
REPORT["poll_pref_off"] = bpy.ops.dreamsmith.download_model.poll()
prefs.allow_downloads = True
REPORT["poll_online"] = bpy.ops.dreamsmith.download_model.poll()
REPORT["draw_before"] = draw()
REPORT["refresh"] = str(bpy.ops.dreamsmith.refresh_models())
REPORT["draw_listed"] = draw()

# Download (background mode: the operator waits to the end).
REPORT["download"] = str(bpy.ops.dreamsmith.download_model(model_id="tester/tiny"))
REPORT["status"] = models.store.status
REPORT["bytes"] = [models.store.done_bytes, models.store.total_bytes]
REPORT["rows_after_download"] = {r["id"]: r["on_disk"] for r in models.store.rows}

# Delete (execute directly, as a script does; the UI asks first).
REPORT["delete"] = str(bpy.ops.dreamsmith.delete_model(model_id=ARGS["sd"]))
REPORT["sd_gone"] = not os.path.exists(os.path.join(ARGS["cache"], "models--" + ARGS["sd"].replace("/", "--")))
try:
    bpy.ops.dreamsmith.delete_model(model_id="demo")
    REPORT["delete_demo"] = "no error"
except RuntimeError as exc:
    REPORT["delete_demo"] = str(exc)

# Sign in: the token goes to the Hub's token store only.
REPORT["sign_in"] = str(bpy.ops.dreamsmith.sign_in(token=ARGS["token"]))
REPORT["signed_in"] = models.store.signed_in
REPORT["remembered"] = bpy.context.window_manager.operator_properties_last("dreamsmith.sign_in").token
REPORT["draw_signed_in"] = draw()
prefs.python_path = ""  # something to save
bpy.context.preferences.is_dirty = True
bpy.ops.wm.save_userpref()
bpy.ops.wm.save_as_mainfile(filepath=ARGS["blend"])
REPORT["userprefs"] = [str(p) for p in pathlib.Path(os.environ["BLENDER_USER_RESOURCES"]).rglob("userpref.blend")]
REPORT["found_in_files"] = [str(p) for p in [*map(pathlib.Path, REPORT["userprefs"]), pathlib.Path(ARGS["blend"])]
                            if ARGS["token"].encode() in p.read_bytes()]

# Cancel: a slow download is stopped; what it fetched is not a model on disk.
os.environ["HF_ENDPOINT"] = ARGS["slow_hub"]
models.start_download(prefs, "tester/slow")
drive(models.download_timer, lambda: models.store.download and models.store.download.wait_for_output,
      lambda: models.store.done_bytes >= 5_000_000, limit=60)  # the stand-in Hub holds the weights half-way
REPORT["progress_seen"] = [models.store.done_bytes, models.store.total_bytes, models.store.status]
proc = models.store.download.proc
REPORT["cancel"] = str(bpy.ops.dreamsmith.cancel_download())
REPORT["cancelled"] = [proc.poll() is not None, models.downloading(), models.store.status]
REPORT["slow_rows"] = [r["id"] for r in models.store.rows]

# Disabling the add-on stops a running download and its timer.
models.start_download(prefs, "tester/slow")
bpy.app.timers.register(models.download_timer, first_interval=100.0, persistent=True)
proc = models.store.download.proc
addon_utils.disable("dreamsmith", default_set=True)
REPORT["unregistered"] = [hasattr(bpy.types, "DREAMSMITH_OT_" + n) for n in OPS]
REPORT["stopped"] = [proc.poll() is not None, bpy.app.timers.is_registered(models.download_timer)]
print("REPORT " + json.dumps(REPORT))
"""


def test_model_manager_in_blender(tmp_path, fake_hub):  # noqa: F811 (the imported fixture)
    hub = fake_hub(files=hub_files(200_000))
    slow = fake_hub(files=hub_files(24 << 20), pause_after=12 << 20)  # the weights stop half-way (progress at 10 MiB)
    cache = tmp_path / "hub"
    fake_repo(cache, SD, diffusers_files(4000))
    keep = fake_repo(cache, "someone/tiny-diffusers", diffusers_files(500), rev="f" * 40)
    args = {"cache": str(cache), "hub": hub.url, "slow_hub": slow.url, "hf_home": str(tmp_path / "hf-home"),
            "token": hub.token, "blend": str(tmp_path / "scene.blend"), "sd": SD}
    try:
        rep = _run(MANAGER, args, timeout=110)
    finally:
        slow.gate.set()
    assert rep["registered"] == [True] * 6 and rep["unregistered"] == [False] * 6

    assert not rep["poll_offline"] and not rep["poll_pref_off"] and rep["poll_online"]
    labels = [c[-1] for c in rep["draw_before"] if c[0] == "label"]
    assert "Stable Diffusion 2.1 base" in labels and "16 GB VRAM" in labels and "CPU" in labels
    assert rep["refresh"] == "{'FINISHED'}"
    listed = rep["draw_listed"]
    assert ["operator", "dreamsmith.delete_model", ""] in listed and ["operator", "dreamsmith.download_model", ""] \
        in listed and ["operator", "dreamsmith.sign_in", ""] in listed
    assert "4.3 KB" not in labels and ["label", "4.3 KB"] in listed  # the size of SD's fake files, once listed
    assert any("Gated, sign in" in c[-1] and "research only" in c[-1] for c in listed)
    assert sum(1 for c in listed if c[0] == "row") >= 5  # the header, 3 known models, the other cached one

    assert rep["download"] == "{'FINISHED'}", rep["status"]
    assert rep["status"].startswith("Downloaded tester/tiny") and rep["bytes"][0] == rep["bytes"][1] > 200_000
    assert rep["rows_after_download"]["tester/tiny"] and rep["rows_after_download"][SD]
    assert (cache / "models--tester--tiny" / "snapshots").is_dir()

    assert rep["delete"] == "{'FINISHED'}" and rep["sd_gone"] and (keep / "snapshots").is_dir()
    assert "ships with the extension" in rep["delete_demo"]

    assert rep["sign_in"] == "{'FINISHED'}" and rep["signed_in"] and rep["remembered"] == ""
    assert ["operator", "dreamsmith.sign_out", ""] in rep["draw_signed_in"]
    assert (tmp_path / "hf-home" / "token").read_text().strip() == hub.token  # the Hub's own store
    assert rep["userprefs"] and (tmp_path / "scene.blend").is_file()
    assert rep["found_in_files"] == [] and hub.token not in rep["_stdout"]

    done, total, status = rep["progress_seen"]
    assert 5_000_000 <= done < total and status.startswith("Downloading tester/slow")
    assert rep["cancel"] == "{'FINISHED'}" and rep["cancelled"][:2] == [True, False]
    assert "cancelled" in rep["cancelled"][2] and "tester/slow" not in rep["slow_rows"]
    assert not list(cache.glob("models--tester--slow/snapshots/*/model_index.json"))
    assert rep["stopped"] == [True, False]
