"""The packaged extension: ``scripts/build_extension.py`` runs Blender's own builder (from the bpy module), the zip
keeps Blender's default exclusions and its own validator accepts it, and
that zip installs and enables in a factory-fresh Blender with isolated user folders, generates "a red cube" with
the toy prior at the draft preset in background mode, survives a save and reopen with its packed image, and
disables leaving no handler or timer behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")


def _builder():
    spec = importlib.util.spec_from_file_location("dreamsmith_build_extension", REPO / "scripts" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return _builder().build(tmp_path_factory.mktemp("dist"))


def test_zip_holds_the_extension_only_and_blender_validates_it(package):
    version = _builder().read_manifest()["version"]
    assert package.name == f"dreamsmith-{version}.zip"
    names = zipfile.ZipFile(package).namelist()
    for required in ("blender_manifest.toml", "__init__.py", "addon/operators.py", "core/app/worker.py",
                     "kernels/hashgrid.py", "LICENSE", "assets/demo_prior/model_index.json",
                     "assets/demo_prior/unet/diffusion_pytorch_model.safetensors"):
        assert required in names
    assert not [n for n in names if n.split("/")[0] in {"tests", "scripts", ".venv", ".git", "node_modules", "dist"}]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".zip", ".blend1"))]
    assert not [n for n in names if any(part.startswith(".") for part in n.split("/"))]  # Blender's defaults kept
    proc = subprocess.run([*_builder().extension_tool(), "validate", str(package)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_blenders_validator_refuses_a_broken_package(tmp_path):
    """The validation step can fail: a manifest without its id is refused, and no zip is left behind."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "__init__.py").write_text("def register(): pass\ndef unregister(): pass\n")
    manifest = (REPO / "blender_manifest.toml").read_text()
    (src / "blender_manifest.toml").write_text("\n".join(ln for ln in manifest.splitlines()
                                                         if not ln.startswith("id ")))
    with pytest.raises(SystemExit, match="extension tool failed"):
        _builder().build(tmp_path / "dist", root=src)
    assert not list((tmp_path / "dist").glob("**/*.zip"))


INSTALL = r"""
import json, os, sys
ARGS = json.loads(sys.argv[1])
os.environ["BLENDER_USER_RESOURCES"] = ARGS["user"]  # isolated user folders: config, scripts, extensions
import bpy, addon_utils
import numpy as np
REPORT = {}
MOD = "bl_ext.user_default.dreamsmith"

def handlers():
    h = bpy.app.handlers
    return {n: len(getattr(h, n)) for n in dir(h) if isinstance(getattr(h, n), list)}

bpy.ops.wm.read_factory_settings(use_empty=True)
before = handlers()
REPORT["install"] = sorted(bpy.ops.extensions.package_install_files(
    filepath=ARGS["zip"], repo="user_default", enable_on_install=True))
REPORT["installed_under_user"] = os.path.isfile(os.path.join(ARGS["user"], "extensions", "user_default", "dreamsmith",
                                                             "blender_manifest.toml"))
REPORT["enabled"] = MOD in bpy.context.preferences.addons
REPORT["operators"] = [hasattr(bpy.types, n) for n in ("DREAMSMITH_OT_generate", "DREAMSMITH_OT_cancel",
                                                         "DREAMSMITH_PT_main")]
prefs = bpy.context.preferences.addons[MOD].preferences
prefs.python_path = sys.executable  # the test's interpreter has torch; Blender's own would need the dependencies
prefs.device = "cpu"
ops_mod = sys.modules[MOD + ".addon.running"]
n_objects = len(bpy.data.objects)
# No model chosen, no network: the draft preset's demo prior, shipped inside the installed extension.
REPORT["result"] = sorted(bpy.ops.dreamsmith.generate(prompt="a red cube", preset="draft"))
obj = bpy.data.objects["a red cube"]
REPORT["models"] = [obj["dreamsmith_coarse_model"], obj["dreamsmith_fine_model"]]
REPORT["added"] = len(bpy.data.objects) - n_objects
REPORT["uv"] = [l.name for l in obj.data.uv_layers]
REPORT["smooth"] = all(p.use_smooth for p in obj.data.polygons)
REPORT["props"] = {k: obj[k] for k in ("dreamsmith_prompt", "dreamsmith_preset", "dreamsmith_seed")}
REPORT["scene_seed"] = bpy.context.scene.dreamsmith.seed

def texture_colour(obj):
    tex = [n for s in obj.material_slots for n in s.material.node_tree.nodes if n.type == "TEX_IMAGE"]
    img = tex[0].image
    px = np.array(img.pixels[:], dtype=np.float32).reshape(-1, 4)[:, :3]
    px = px[px.max(axis=1) > 0.05]  # texels the bake wrote (the atlas' gaps stay black)
    return img.packed_file is not None, np.median(px, axis=0).round(3).tolist()

REPORT["packed"], REPORT["median_rgb"] = texture_colour(obj)
blend = os.path.join(ARGS["out"], "scene.blend")
bpy.ops.wm.save_as_mainfile(filepath=blend)
addon_utils.disable(MOD, default_set=True)
REPORT["disabled"] = MOD not in bpy.context.preferences.addons and not hasattr(bpy.types, "DREAMSMITH_OT_generate")
REPORT["timer_left"] = bpy.app.timers.is_registered(ops_mod.job_timer)
REPORT["handlers_same"] = handlers() == before
REPORT["job_dirs"] = [n for n in os.listdir(bpy.app.tempdir) if n.startswith("dreamsmith-job-")]
bpy.ops.wm.open_mainfile(filepath=blend)
obj = bpy.data.objects["a red cube"]
REPORT["reopened_packed"], REPORT["reopened_rgb"] = texture_colour(obj)
REPORT["reopened_prompt"] = obj["dreamsmith_prompt"]
print("REPORT " + json.dumps(REPORT))
"""


def test_built_zip_installs_generates_a_red_cube_and_disables_cleanly(package, tmp_path):
    args = {"zip": str(package), "user": str(tmp_path / "user"), "out": str(tmp_path)}
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", INSTALL, json.dumps(args)], capture_output=True, text=True,
                          timeout=1200, env=env, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(lines[-1][len("REPORT "):])
    assert rep["install"] == ["FINISHED"] and rep["installed_under_user"] and rep["enabled"]
    assert rep["operators"] == [True, True, True]
    assert rep["result"] == ["FINISHED"] and rep["added"] == 1 and rep["uv"] == ["UVMap"] and rep["smooth"]
    assert rep["models"] == ["demo", "demo"]
    seed = rep["props"].pop("dreamsmith_seed")  # Random Seed is on in a new scene: the seed used is recorded
    assert rep["props"] == {"dreamsmith_prompt": "a red cube", "dreamsmith_preset": "draft"}
    assert seed == rep["scene_seed"] and 0 <= seed < 2**31
    r, g, b = rep["median_rgb"]
    assert rep["packed"] and r > 1.5 * max(g, b), rep["median_rgb"]  # red-dominant texture
    assert rep["disabled"] and not rep["timer_left"] and rep["handlers_same"] and rep["job_dirs"] == []
    assert rep["reopened_packed"] and rep["reopened_rgb"] == rep["median_rgb"]
    assert rep["reopened_prompt"] == "a red cube"
