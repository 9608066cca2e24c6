"""The shared vocabulary and the import arrows: addon -> protocol, core -> kernels, kernels -> nothing of ours;
protocol is standard library only, and the lists that must agree are one list."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from dreamsmith import protocol

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(relative level, module) of every import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            out += [(0, alias.name) for alias in node.names]
    return out


def test_protocol_is_standard_library_only():
    for level, module in _imports(REPO / "protocol.py"):
        assert level == 0 and module.split(".")[0] in sys.stdlib_module_names, module


def test_kernels_import_nothing_of_ours():
    for path in (REPO / "kernels").glob("*.py"):
        for level, module in _imports(path):
            assert level <= 1 and not module.startswith("dreamsmith"), (path.name, level, module)


def test_addon_reaches_outside_only_for_the_protocol():
    for path in (REPO / "addon").glob("*.py"):
        for level, module in _imports(path):
            assert not module.startswith("dreamsmith"), (path.name, module)
            if level >= 2:
                assert module == "protocol", (path.name, module)


def test_core_does_not_import_the_addon():
    for path in (REPO / "core").rglob("*.py"):
        for _level, module in _imports(path):
            assert "addon" not in module.split("."), (path, module)


def test_dependency_list_is_the_packages_own():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(declared) == sorted(req for _, req in protocol.DEPENDENCIES)


def test_cli_and_worker_take_the_protocol_names():
    from dreamsmith.core.app.cli import build_parser
    from dreamsmith.core.settings.presets import GENERATE_PRESETS, RECONSTRUCT_PRESETS, RETEXTURE_PRESETS

    for table in (GENERATE_PRESETS, RECONSTRUCT_PRESETS, RETEXTURE_PRESETS):
        assert tuple(table) == protocol.PRESET_NAMES
    gen = build_parser()._subparsers._group_actions[0].choices["generate"]
    choices = {a.dest: a.choices for a in gen._actions if a.choices}
    assert tuple(choices["preset"]) == protocol.PRESET_NAMES and tuple(choices["device"]) == protocol.DEVICE_NAMES


def test_every_preset_defaults_to_listed_ungated_models():
    from dreamsmith.core.jobs import JOBS
    from dreamsmith.protocol import DEFAULT_MODELS, MODELS, PRESET_NAMES, model_info

    assert len({m.id for m in MODELS}) == len(MODELS)
    assert set(DEFAULT_MODELS) == set(PRESET_NAMES)
    for preset, (coarse, fine) in DEFAULT_MODELS.items():
        for model_id, stage in ((coarse, "coarse"), (fine, "fine")):
            info = model_info(model_id)
            assert info is not None and not info.gated and stage in info.stages, (preset, model_id)
        for name, kind in JOBS.items():
            cfg = kind.config(preset, {})
            if "coarse_model" in kind.priors:
                assert cfg.coarse_model.model == coarse, (name, preset)
            if "fine_model" in kind.priors:
                assert cfg.fine_model.model == fine, (name, preset)
    assert model_info("stabilityai/stable-diffusion-2-1-base") is None  # removed from the Hub in November 2025


def test_every_model_says_the_memory_it_needs():
    from dreamsmith.protocol import DEMO_MODEL, IF_I_XL, MODELS, SD21_BASE, model_info

    assert all(isinstance(m.vram_gb, float) and m.vram_gb >= 0 for m in MODELS)
    assert model_info(DEMO_MODEL).vram_gb == 0.0  # runs on a CPU
    assert model_info(SD21_BASE).vram_gb == 16.0 and model_info(IF_I_XL).vram_gb == 14.0  # measured, H200, fp16


def test_the_draft_default_runs_offline_with_the_shipped_demo_prior(tmp_path, monkeypatch):
    import json

    from test_golden import SMALL

    from dreamsmith.core.jobs import JOBS

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kind = JOBS["generate"]
    summary = kind.run({"prompt": "a blue cone"}, tmp_path / "cone.glb",
                       kind.config("draft", json.loads(json.dumps(SMALL["generate"]))), device="cpu")
    assert summary["models"] == {"coarse": "demo", "fine": "demo"}
    assert (tmp_path / "cone.glb").stat().st_size > 1000


def test_job_models_and_what_is_on_disk(tmp_path):
    from dreamsmith.protocol import DEMO_MODEL, SD21_BASE, job_models, model_on_disk

    assert job_models("draft") == (DEMO_MODEL, DEMO_MODEL)
    assert job_models("standard") == (SD21_BASE, SD21_BASE)
    assert job_models("high", "my/model") == ("my/model", "my/model")
    assert job_models("high", "my/coarse", "my/fine") == ("my/coarse", "my/fine")
    assert job_models("standard", "", "my/fine") == (SD21_BASE, "my/fine")
    assert model_on_disk(DEMO_MODEL) and not model_on_disk(str(tmp_path / "nowhere"))
    assert not model_on_disk(SD21_BASE, str(tmp_path))
    snap = tmp_path / "models--sd2-community--stable-diffusion-2-1-base" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    assert model_on_disk(SD21_BASE, str(tmp_path))
    folder = tmp_path / "local"
    folder.mkdir()
    assert not model_on_disk(str(folder))
    (folder / "model_index.json").write_text("{}")
    assert model_on_disk(str(folder))
