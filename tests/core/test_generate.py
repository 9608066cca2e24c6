"""``generate`` end to end with tiny random priors built from configs (the real diffusers code path, no weights
downloaded): the two-stage pipeline writes a textured GLB, the same seed reproduces it bitwise on CPU, and bad
input exits 2 with nothing written. Whether prompts steer shape and colour is the toy prior's sweep
(scripts/sweep_toy_prior.py); here the plumbing is what is under test."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models import build_latent_prior, build_pixel_prior

from dreamsmith.core.app.cli import main
from dreamsmith.core.meshio import read_mesh

# A few steps only: a strong start blob, so that there is an object to mesh (the draft's weak blob needs its
# 400 steps to grow one).
TINY = {"coarse": {"steps": 6, "field": {"grid": {"n_levels": 4, "log2_hashmap_size": 12, "finest_resolution": 32},
                                         "blob_density": 5.0, "blob_radius": 0.4},
                   "occupancy": {"resolution": 16}, "volume": {"n_samples_per_ray": 48}},
        "coarse_sds": {"render_size": 16, "views": {"views_per_step": 2}},
        "mesh": {"steps": 3, "render_size": 16, "dmtet": {"resolution": 16}},
        "mesh_sds": {"views": {"views_per_step": 2}},
        "bake": {"texture_size": 32}}


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    d = tmp_path_factory.mktemp("priors")
    cfg = d / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    return build_pixel_prior(d / "pixel"), build_latent_prior(d / "latent"), cfg


def _generate(priors, out: Path, *extra: str, prompt: str = "a red cube") -> int:
    pixel, latent, cfg = priors
    return main(["generate", "--prompt", prompt, "--model", str(pixel), "--preset", "draft", "--out", str(out),
                 "--config", str(cfg), "--device", "cpu", "--quiet", *extra])


def test_two_stage_generate_writes_textured_glb_and_reproduces(priors, tmp_path):
    pixel, latent, _ = priors
    a, b = tmp_path / "a.glb", tmp_path / "b.glb"
    assert _generate(priors, a, "--fine-model", str(latent), "--seed", "5", "--preview", str(tmp_path / "a.png")) == 0
    assert _generate(priors, b, "--fine-model", str(latent), "--seed", "5") == 0
    va, fa, uva, ta = read_mesh(a)
    vb, fb, uvb, tb = read_mesh(b)
    assert len(fa) > 0 and uva is not None and ta is not None and (tmp_path / "a.png").is_file()
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(ta, tb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_two_stage_generate_runs_on_cuda_in_half_precision(priors, tmp_path):
    """The GPU path (fp16 priors, the kernels' CUDA paths) end to end; bitwise equality is promised on CPU only."""
    pixel, latent, _ = priors
    out = tmp_path / "gpu.glb"
    assert _generate(priors, out, "--fine-model", str(latent), "--seed", "5", "--device", "cuda") == 0
    v, f, uv, tex = read_mesh(out)
    assert len(f) > 0 and uv is not None and np.isfinite(v).all() and tex is not None


@pytest.mark.parametrize("case", ["empty", "long", "unknown_model", "not_diffusers", "pickle"])
def test_bad_input_exits_2_and_writes_nothing(priors, tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pixel, _, cfg = priors
    out = tmp_path / "out" / "x.glb"
    prompt, model = "a red cube", str(pixel)
    if case == "empty":
        prompt, expect = "   ", "empty"
    elif case == "long":
        prompt, expect = "a red cube " * 200, "characters"
    elif case == "unknown_model":
        model, expect = "nobody/no-such-model-xyz", "not found"
    elif case == "not_diffusers":
        (tmp_path / "plain").mkdir()
        model, expect = str(tmp_path / "plain"), "model_index.json"
    elif case == "pickle":
        bad = tmp_path / "pickled"
        shutil.copytree(pixel, bad)
        (bad / "unet" / "diffusion_pytorch_model.safetensors").unlink()
        (bad / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\0" * 16)
        model, expect = str(bad), "safetensors"
    rc = main(["generate", "--prompt", prompt, "--model", model, "--preset", "draft", "--out", str(out),
               "--config", str(cfg), "--device", "cpu", "--quiet"])
    assert rc == 2
    assert expect.lower() in capsys.readouterr().err.lower()
    assert not out.exists() and not out.parent.exists()


def test_error_messages_say_what_to_do(priors, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pixel, _, cfg = priors
    out = tmp_path / "x.glb"
    assert _generate(priors, out, prompt="") == 2
    assert "prompt is empty" in capsys.readouterr().err
    rc = main(["generate", "--prompt", "a red cube", "--model", "nobody/no-such-model-xyz", "--out", str(out),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "nobody/no-such-model-xyz" in err and not out.exists()


def test_live_previews_arrive_from_both_stages_and_do_not_change_the_result(priors, tmp_path):
    from dreamsmith.core.jobs.generate import generate_config, run_generate
    from dreamsmith.core.settings.config import merge

    pixel, _, _ = priors
    over = merge(TINY, {"seed": 3, "coarse_model": {"model": str(pixel)}, "coarse": {"preview_every": 3},
                        "mesh": {"preview_every": 2}})
    events, deterministic = [], set()

    def listen(event):
        events.append(event)
        deterministic.add(torch.are_deterministic_algorithms_enabled())

    run_generate("a red cube", tmp_path / "live.glb", generate_config("draft", over), device="cpu", callback=listen)
    assert deterministic == {True}  # a CPU job runs with torch's deterministic algorithms (see test_device.py)
    run_generate("a red cube", tmp_path / "quiet.glb", generate_config("draft", over), device="cpu")
    shown = [(e.stage, e.step, e.preview) for e in events if e.preview is not None]
    assert [(s, n) for s, n, _ in shown] == [("coarse", 3), ("coarse", 6), ("mesh", 2), ("mesh", 3)]
    for _, _, img in shown:
        assert img.dtype == np.uint8 and img.shape == (96, 4 * 96, 3)
        assert img.min() < 250  # something other than the white background is drawn
    live, quiet = read_mesh(tmp_path / "live.glb"), read_mesh(tmp_path / "quiet.glb")
    for a, b in zip(live, quiet, strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_choices_merge_the_same_for_cli_and_worker():
    from dreamsmith.core.app.worker import Job, job_overrides
    from dreamsmith.core.jobs import JOBS
    from dreamsmith.core.jobs.io import merge_models
    from dreamsmith.core.runtime.errors import ConfigError

    base = {"coarse_model": {"revision": "main"}, "mesh": {"steps": 3}}
    got = merge_models(base, JOBS["generate"].priors, "a/coarse", None, True, "/cache")
    assert got == {"coarse_model": {"revision": "main", "model": "a/coarse", "allow_network": True,
                                    "cache_dir": "/cache"},
                   "fine_model": {"model": "", "allow_network": True, "cache_dir": "/cache"}, "mesh": {"steps": 3}}
    assert base == {"coarse_model": {"revision": "main"}, "mesh": {"steps": 3}}  # not changed
    assert merge_models({}, JOBS["generate"].priors, "a", "b")["fine_model"] == {"model": "b"}
    assert merge_models({}, JOBS["generate"].priors, None, "b") == {"fine_model": {"model": "b"}}
    job = Job(prompt="x", out="x.glb", seed=7, model="a/coarse", config=base, allow_network=True, cache_dir="/cache")
    assert job_overrides(job) == dict(got, seed=7)
    with pytest.raises(ConfigError):
        merge_models({"fine_model": "b"}, JOBS["generate"].priors, "a")
    # a job with one (mesh-stage) prior takes --model for it, named like every other job's
    one = merge_models({}, JOBS["retexture"].priors, "a", None, True)
    assert one == {"fine_model": {"model": "a", "allow_network": True}}
    retex = Job(command="retexture", mesh="m.glb", prompt="x", out="x.glb", model="a")
    assert job_overrides(retex) == {"seed": 0, "fine_model": {"model": "a"}}
    for kind in JOBS.values():  # the table names exactly the priors each job's config has, in stage order
        fields = [f.name for f in dataclasses.fields(kind.config_class)]
        assert kind.priors == tuple(k for k in ("coarse_model", "fine_model") if k in fields), kind.name


def test_saved_state_round_trips_and_an_edit_fine_tunes_it(priors, tmp_path):
    import torch

    from dreamsmith.core.jobs.edit import edit_config, run_edit
    from dreamsmith.core.scene.state import load_state
    from dreamsmith.core.settings.config import merge

    pixel, _, _ = priors
    state = tmp_path / "obj.safetensors"
    assert _generate(priors, tmp_path / "obj.glb", "--save-state", str(state), "--seed", "2") == 0
    field, geo, cfg, _ = load_state(state, torch.device("cpu"))
    assert cfg["seed"] == 2 and geo.sdf.shape[0] == (TINY["mesh"]["dmtet"]["resolution"] + 1) ** 3
    verts, faces = geo()
    assert len(faces) > 0 and torch.isfinite(field.density(verts)).all()
    world = [2.0, 0, 0, 10.0, 0, 2.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 1]  # scale 2, move +10 in x
    over = merge(TINY, {"coarse_model": {"model": str(pixel)}, "mesh": {"steps": 0}})  # 0: the state as saved
    s = run_edit(None, "a blue cube", tmp_path / "edited.glb", edit_config("draft", over), device="cpu",
                 state=state, world=world)
    assert s["source"] == "state"
    v, *_ = read_mesh(tmp_path / "edited.glb")
    v0, *_ = read_mesh(tmp_path / "obj.glb")
    np.testing.assert_allclose(np.sort(v[:, 2]), np.sort(2 * v0[:, 2]), atol=1e-4)  # same surface, placed
    np.testing.assert_allclose(np.sort(v[:, 0]), np.sort(2 * v0[:, 0] + 10.0), atol=1e-4)
    assert _generate(priors, tmp_path / "x.glb", "--save-state", str(tmp_path / "x.pt")) == 2
    assert not (tmp_path / "x.glb").exists()
