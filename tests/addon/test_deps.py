"""The engine environment: the shipped lock pins what constraints.txt pins and covers every dependency; the
commands and folders are right for Windows, macOS and Linux (short root, Windows' 260-character limit); and in
Blender (module mode, background) Install engine is refused without online access or while a job runs, installs
with real uv (offline, a local wheel) into the root, logs, refuses jobs meanwhile, makes the engine interpreter the
environment's; Repair rebuilds it, Uninstall removes only what carries our marker, and a failing install reports
uv's error and leaves no environment behind."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(rel: str):
    name = "dreamsmith_test_" + rel.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


setup = _load("addon/engine_setup.py")


def test_lock_pins_the_constraints_versions_and_every_dependency():
    lock = setup.read_pins((REPO / setup.LOCK_NAME).read_text(encoding="utf-8"))
    constraints = setup.read_pins((REPO / "constraints.txt").read_text(encoding="utf-8"))
    protocol = _load("protocol.py")
    for _, requirement in protocol.DEPENDENCIES:
        assert setup.requirement_name(requirement) in lock, f"{requirement} is not in {setup.LOCK_NAME}"
    shared = set(lock) & set(constraints)
    assert {"torch", "diffusers", "transformers", "numpy"} <= shared
    for name in shared:
        assert lock[name] == constraints[name], f"{name}: lock {lock[name]} vs constraints.txt {constraints[name]}"
    assert not [n for n in lock if n.startswith(("nvidia-", "triton"))]  # uv's --torch-backend picks those
    assert constraints["uv"] == {setup.UV_VERSION}


def test_roots_are_short_and_per_platform():
    env = {"LOCALAPPDATA": r"C:\Users\ana\AppData\Local"}
    assert setup.default_root("win32", env, r"C:\Users\ana") == PureWindowsPath(r"C:\Users\ana\AppData\Local\dsm")
    assert setup.default_root("darwin", {}, "/Users/ana") == PurePosixPath(
        "/Users/ana/Library/Application Support/dreamsmith")
    assert setup.default_root("linux", {}, "/home/ana") == PurePosixPath("/home/ana/.local/share/dreamsmith")
    assert setup.default_root("linux", {"XDG_DATA_HOME": "/data"}, "/home/ana") == PurePosixPath("/data/dreamsmith")
    assert setup.default_root("win32", {setup.ROOT_ENV: r"D:\e"}, r"C:\x") == PureWindowsPath(r"D:\e")


def test_commands_for_each_platform():
    win = setup.EngineLayout(PureWindowsPath(r"C:\Users\ana\AppData\Local\dsm"), "win32")
    mac = setup.EngineLayout(PurePosixPath("/Users/ana/Library/Application Support/dreamsmith"), "darwin")
    lin = setup.EngineLayout(PurePosixPath("/home/ana/.local/share/dreamsmith"), "linux")
    assert str(win.python) == r"C:\Users\ana\AppData\Local\dsm\env\Scripts\python.exe"
    assert str(mac.python).endswith("dreamsmith/env/bin/python") and str(lin.python).endswith("env/bin/python")
    assert str(win.uv_candidates()[0]) == r"C:\Users\ana\AppData\Local\dsm\tools\Scripts\uv.exe"
    assert str(lin.uv_candidates()[0]) == "/home/ana/.local/share/dreamsmith/tools/bin/uv"
    boot = setup.uv_bootstrap_command(r"C:\Blender\python\bin\python.exe", win)
    assert boot[:4] == [r"C:\Blender\python\bin\python.exe", "-m", "pip", "install"]
    assert boot[boot.index("--target") + 1] == r"C:\Users\ana\AppData\Local\dsm\tools"
    assert boot[-1] == f"uv=={setup.UV_VERSION}" and "--no-deps" in boot
    for lay in (win, mac, lin):
        venv = setup.venv_command("uv", lay)
        assert venv == ["uv", "venv", "--no-config", "--no-project", "--python", "3.11", "--managed-python",
                        str(lay.env)]
        pkgs = setup.packages_command("uv", lay, "/ext/engine.lock")
        assert pkgs == ["uv", "pip", "install", "--no-config", "--python", str(lay.python), "-r", "/ext/engine.lock",
                        "--torch-backend", "auto"]
    assert "--managed-python" not in setup.venv_command("uv", lin, "/usr/bin/python3.11")  # a given interpreter
    env = setup.uv_environment(lin, {"PATH": "/bin", "PYTHONPATH": "/x", "VIRTUAL_ENV": "/v"})
    assert env["UV_CACHE_DIR"] == str(lin.cache) and env["UV_PYTHON_INSTALL_DIR"] == str(lin.pythons)
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env and env["PATH"] == "/bin"


def test_windows_path_limit():
    ok = setup.EngineLayout(PureWindowsPath(r"C:\Users\ana\AppData\Local\dsm"), "win32")
    assert setup.longest_path(ok) < setup.WINDOWS_MAX_PATH and setup.path_problem(ok) == ""
    long_user = "a" * 120
    bad = setup.EngineLayout(PureWindowsPath(rf"C:\Users\{long_user}\AppData\Local\dsm"), "win32")
    message = setup.path_problem(bad)
    assert "too long" in message and setup.ROOT_ENV in message
    deep = setup.EngineLayout(PurePosixPath("/" + "d" * 300), "linux")
    assert setup.path_problem(deep) == ""  # only Windows has the limit


def test_status_and_error_lines():
    assert setup.status_line("Resolved 60 packages in 1.2s") == "Resolved 60 packages in 1.2s"
    assert setup.status_line(" + torch==2.13.0") is None and setup.status_line("") is None
    out = ["Using Python 3.11.7 environment at: env", "error: No solution found when resolving dependencies",
           "  cause: Because dsm-nosuch was not found ..."]
    assert setup.error_summary(out) == ("error: No solution found when resolving dependencies cause: Because "
                                        "dsm-nosuch was not found ...")
    assert setup.error_summary(["ERROR: Could not find a version", "more"]).startswith("ERROR: Could not find")


def test_lock_script_drops_torch_build_packages():
    lock = _load("scripts/lock_engine.py")
    text = ("# header\nnumpy==1.26.4  # via torch\nnvidia-cublas==13.1 ; sys_platform == 'linux'\n"
            "    # via torch\ntriton==3.7.1\ntorch==2.13.0\n")
    assert lock.drop_torch_build_packages(text) == "# header\nnumpy==1.26.4  # via torch\ntorch==2.13.0\n"


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed (Blender's builder)")
def test_the_extension_ships_the_lock_and_the_setup_modules(tmp_path):
    package = _load("scripts/build_extension.py").build(tmp_path)
    files = set(zipfile.ZipFile(package).namelist())
    assert {setup.LOCK_NAME, "addon/engine_setup.py", "addon/engine_install.py", "addon/deps.py"} <= files
    assert "tools/batch_generate.py" in files  # the batch script ships with the extension
    assert "scripts/lock_engine.py" not in files


SCRIPT = r"""
import json, os, subprocess, sys
from pathlib import Path
ARGS = json.loads(sys.argv[1])
os.environ["BLENDER_USER_RESOURCES"] = ARGS["user"]
os.environ["DREAMSMITH_ENGINE_ROOT"] = ARGS["root"]
import bpy, addon_utils
REPORT = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import deps, running
from dreamsmith.addon.preferences import get_preferences, interpreter
TEST = dict(python_request=sys.executable, uv_args_json=json.dumps(["--offline", "--no-index", "--find-links",
            ARGS["wheels"]]), pip_args_json=json.dumps(["--no-index", "--find-links", ARGS["wheels"]]))
root = Path(ARGS["root"])
env_python = root / "env" / "bin" / "python"

def call(action="INSTALL", lock=ARGS["lock"], **kw):
    try:
        return str(sorted(bpy.ops.dreamsmith.install_dependencies(action=action, lock_file=lock, **{**TEST, **kw})))
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc)

def imports():
    proc = subprocess.run([str(env_python), "-c", "import dsm_dummy; print(dsm_dummy.VALUE)"], capture_output=True,
                          text=True)
    return proc.stdout.strip()

REPORT["before"] = interpreter(get_preferences()) == sys.executable
bpy.context.preferences.system.use_online_access = False
REPORT["offline"] = call()
bpy.context.preferences.system.use_online_access = True
running.job_state.job = object()  # a job is running
REPORT["during_job"] = call()
running.job_state.job = None
REPORT["ok"] = call()
REPORT["uv_installed"] = (root / "tools" / "bin" / "uv").is_file()
log = (root / "install.log").read_text()
REPORT["log"] = "venv" in log and "Installed 1 package" in log
REPORT["status"] = deps.status_text()
REPORT["imports"] = imports()
REPORT["interpreter"] = interpreter(get_preferences()) == str(env_python)

class UI:  # records what the preferences' engine section draws
    texts, enabled = [], True
    def box(self): return self
    def row(self): return self
    def label(self, text="", icon="NONE"): UI.texts.append(text)
    def operator(self, idname, text="", icon="NONE"):
        UI.texts.append(text)
        return type("Op", (), {})()

deps.draw_engine(UI(), get_preferences())
REPORT["drawn"] = UI.texts
(root / "env" / "junk.txt").write_text("x")
# Repair, followed step by step: jobs are refused meanwhile.
deps.start_install({"lock": ARGS["lock"], "python_request": sys.executable, "uv_args": json.loads(
    TEST["uv_args_json"])}, repair=True)
REPORT["installing"] = deps.installing()
REPORT["install_during_install"] = call()
result = None
while result is None:
    result = deps.advance()
REPORT["repaired"] = [result[0], not (root / "env" / "junk.txt").exists(), imports(), deps.installing()]
REPORT["repair_op"] = [call(action="REPAIR"), imports()]
REPORT["uninstall"] = [call(action="UNINSTALL", lock=""), root.exists(),
                       interpreter(get_preferences()) == sys.executable]
REPORT["fails"] = call(lock=ARGS["bad_lock"])
REPORT["fails_left"] = [deps.installed(), (root / "env").exists(), (root / "install.log").is_file()]
foreign = Path(ARGS["foreign"])
os.environ["DREAMSMITH_ENGINE_ROOT"] = str(foreign)
REPORT["foreign"] = [call(action="UNINSTALL", lock=""), (foreign / "env" / "keep.txt").is_file()]
addon_utils.disable("dreamsmith", default_set=True)
REPORT["timer"] = bpy.app.timers.is_registered(deps.install_timer)
print("REPORT " + json.dumps(REPORT))
"""


def _wheel(folder: Path, name: str, version: str, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """A minimal wheel, written here (installed with --no-index)."""
    dist = f"{name}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = {f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: dreamsmith-tests\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n"}
    files = {**files, **meta}
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            info = zipfile.ZipInfo(arc)
            info.external_attr = (0o100755 if arc in executable else 0o100644) << 16
            zf.writestr(info, text)
        zf.writestr(f"{dist}.dist-info/RECORD", "".join(f"{a},,\n" for a in files) + f"{dist}.dist-info/RECORD,,\n")
    return path


def _real_uv() -> str | None:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None and importlib.util.find_spec("uv") is not None:
        import uv

        found = uv.find_uv_bin()
    return found


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")
@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in uv wheel holds a shell script")
def test_install_repair_uninstall_in_blender(tmp_path):
    real_uv = _real_uv()
    if real_uv is None:
        pytest.skip("uv is not installed (pip install -c constraints.txt uv)")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "dsm_dummy", "1.0", {"dsm_dummy/__init__.py": "VALUE = 42\n"})
    # uv's wheel holds the uv binary as a script; this one hands over to the real uv (no network).
    script = f"uv-{setup.UV_VERSION}.data/scripts/uv"
    _wheel(wheels, "uv", setup.UV_VERSION, {"uv/__init__.py": "", script: f'#!/bin/sh\nexec "{real_uv}" "$@"\n'},
           executable=(script,))
    (tmp_path / "engine.lock").write_text("dsm-dummy==1.0\n")
    (tmp_path / "bad.lock").write_text("dsm-no-such-package==1.0\n")
    foreign = tmp_path / "foreign"
    (foreign / "env").mkdir(parents=True)
    (foreign / "env" / "keep.txt").write_text("mine")
    args = {"user": str(tmp_path / "user"), "root": str(tmp_path / "engine"), "wheels": str(wheels),
            "lock": str(tmp_path / "engine.lock"), "bad_lock": str(tmp_path / "bad.lock"), "foreign": str(foreign)}
    env = {k: v for k, v in os.environ.items() if k != "DREAMSMITH_UV"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          timeout=300, env=dict(env, PIP_NO_INDEX="1", UV_OFFLINE="1"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(lines[-1][len("REPORT "):])
    assert rep["before"]
    assert rep["offline"].startswith("RuntimeError") and "Allow Online Access" in rep["offline"]
    assert rep["during_job"].startswith("RuntimeError") and "job is running" in rep["during_job"]
    assert rep["ok"] == "['FINISHED']" and rep["uv_installed"] and rep["log"], rep
    assert rep["status"].startswith("Engine installed") and rep["imports"] == "42" and rep["interpreter"]
    assert rep["drawn"][:2] == ["Engine environment", f"Installed: {tmp_path / 'engine' / 'env'}"]
    assert {"Repair", "Uninstall"} <= set(rep["drawn"])
    assert rep["installing"] and "being installed" in rep["install_during_install"]
    assert rep["repaired"] == [True, True, "42", False]
    assert rep["repair_op"] == ["['FINISHED']", "42"]
    assert rep["uninstall"] == ["['FINISHED']", False, True]
    assert rep["fails"].startswith("RuntimeError") and "Installing failed" in rep["fails"], rep["fails"]
    assert "error: No solution found" in rep["fails"] and "full log:" in rep["fails"]
    assert rep["fails_left"] == [False, False, True]
    assert "not made by Dreamsmith" in rep["foreign"][0] and rep["foreign"][1]
    assert not rep["timer"]
