"""Every preset of every command runs as shipped, on tiny random priors with the real defaults' structure.

The priors come from ``dreamsmith.eval.random_priors``: an IF-like pixel prior (64 px, learned variance, T5 with a
text projection, SimpleCrossAttn blocks, learned-range DDPM) and an SD-like latent prior (4-channel UNet at 64,
x8 VAE, CLIP, PNDM config). Both pairings run: IF coarse + SD fine (the Magic3D default) and one SD prior for both
stages (latent score distillation in the coarse stage); each command runs every preset once (:data:`RUNS`). The
only thing scaled down is what :func:`scaled_down` names: step counts and render, grid and texture sizes; stages,
background, shading, guidance and prior kinds are the preset's. The full sizes are measured by
``scripts/bench_presets.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dreamsmith.core.app.cli import main
from dreamsmith.core.meshio import TexturedMesh, read_mesh, write_glb
from dreamsmith.core.settings.config import to_dict
from dreamsmith.eval.random_priors import write_prior
from dreamsmith.eval.synth_objects import write_dataset

PRESETS = ("draft", "fast", "standard", "high")
PAIRINGS = ("if+sd", "sd")


def scaled_down(command: str) -> dict[str, Any]:
    """Config overrides that shrink a preset for the suite: step counts, render sizes (pixels and samples per
    ray), grid sizes (occupancy, DMTet, the edit's starting grid), texture sizes and batch sizes (posed rays and
    views a step, the picture's condition). Nothing else."""
    if command == "retexture":
        return {"mesh": {"steps": 2, "render_size": 64}, "bake": {"texture_size": 64}}
    over: dict[str, Any] = {
        "coarse": {"steps": 3, "occupancy": {"resolution": 32}, "volume": {"n_samples_per_ray": 64}},
        "mesh": {"steps": 2, "render_size": 64, "dmtet": {"resolution": 24}},
        "bake": {"texture_size": 64},
    }
    if command == "reconstruct":  # and the posed rays and views a step (batch sizes)
        over["coarse"]["steps"] = 10
        over["mesh"]["render_size"] = 32
        over["coarse_reference"] = {"rays_per_step": 2048}
        over["mesh_reference"] = {"views_per_step": 2}
        return over
    over["coarse_sds"] = {"render_size": 32}
    if command == "image":  # image to 3D: generate with a picture; a few steps of learning its condition
        over["image"] = {"inversion": {"steps": 2, "batch": 2}, "caption": {"batch": 2, "sweeps": 1}}
    if command == "edit":
        over["prior_resolution"] = 24
    return over


# The leaves scaled_down may change: steps and sizes.
SCALED = {"steps", "render_size", "resolution", "n_samples_per_ray", "texture_size", "prior_resolution", "batch",
          "sweeps", "rays_per_step", "views_per_step"}


def _config(command: str, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from dreamsmith.core.jobs.edit import edit_config
    from dreamsmith.core.jobs.generate import generate_config
    from dreamsmith.core.jobs.reconstruct import reconstruct_config
    from dreamsmith.core.jobs.retexture import retexture_config

    make = {"generate": generate_config, "image": generate_config, "edit": edit_config,
            "retexture": retexture_config, "reconstruct": reconstruct_config}[command]
    return to_dict(make(preset, overrides))


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


@pytest.mark.parametrize("command", ["generate", "image", "edit", "retexture", "reconstruct"])
@pytest.mark.parametrize("preset", PRESETS)
def test_scaled_down_changes_only_steps_and_sizes(command, preset):
    full, small = _leaves(_config(command, preset, {})), _leaves(_config(command, preset, scaled_down(command)))
    changed = {k for k in full if full[k] != small[k]}
    assert changed and all(k.rsplit(".", 1)[-1] in SCALED for k in changed), changed
    assert all(small[k] <= full[k] for k in changed)  # only ever smaller


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    priors = {"if": write_prior("if", root / "if-like", "tiny"), "sd": write_prior("sd", root / "sd-like", "tiny")}
    configs = {}
    for command in ("generate", "image", "edit", "retexture", "reconstruct"):
        configs[command] = root / f"{command}.json"
        configs[command].write_text(json.dumps(scaled_down(command)))
    # An input mesh as artists have them: off-centre, scaled, one flat colour.
    from dreamsmith.core.finish.bake import unwrap
    from dreamsmith.eval.synth_objects import ground_truth_mesh

    v, f = ground_truth_mesh("box_ball", resolution=24)[:2]
    v = (v * 2.5 + np.array([3.0, -1.0, 0.5])).astype(np.float32)
    v2, f2, uv, _ = unwrap(v, f)
    mesh = write_glb(TexturedMesh(v2, f2, uv, None, np.full((16, 16, 3), 200, np.uint8)), root / "input.glb")
    images = write_dataset("box_ball", root / "views", n_train=8, n_test=1, size=32, seed=1)
    picture = np.zeros((96, 128, 4), np.uint8)  # a yellow disc on a transparent background
    yy, xx = np.mgrid[:96, :128]
    picture[(yy - 50) ** 2 + (xx - 60) ** 2 < 30 ** 2] = (230, 200, 20, 255)
    from PIL import Image

    Image.fromarray(picture).save(root / "picture.png")
    return priors, configs, mesh, images


def _models(command: str, pairing: str, priors: dict[str, Path]) -> list[str]:
    if command == "retexture":  # one prior; its kind is the pairing's coarse one
        return ["--model", str(priors["if" if pairing == "if+sd" else "sd"])]
    if pairing == "if+sd":
        return ["--model", str(priors["if"]), "--fine-model", str(priors["sd"])]
    return ["--model", str(priors["sd"])]


def _check_result(out: Path, validate) -> None:
    verts, faces, uvs, tex = read_mesh(out)
    assert len(faces) > 0 and uvs is not None and tex is not None and np.isfinite(verts).all()
    report = validate(out)
    if report is not None:  # the Khronos validator, where node has it
        assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
        assert report["info"]["hasTextures"]


# Each preset once per command, the pairings alternating, and both pairings on the default GPU preset: a pairing
# changes the priors' kinds (pixels or latents in the coarse stage, the kind a re-texture scores with), a preset
# the stages' settings; one run each covers both without the full cross product.
RUNS = [("draft", "if+sd"), ("fast", "sd"), ("standard", "if+sd"), ("standard", "sd"), ("high", "if+sd")]


def test_the_runs_cover_every_preset_and_pairing():
    assert {p for p, _ in RUNS} == set(PRESETS) and {q for _, q in RUNS} == set(PAIRINGS)


@pytest.mark.parametrize(("preset", "pairing"), RUNS)
@pytest.mark.parametrize("command", ["generate", "edit", "retexture"])
def test_prompt_commands_run_every_preset(setup, tmp_path, validate_if_present, command, preset, pairing):
    priors, configs, mesh, _ = setup
    out = tmp_path / f"{command}-{preset}.glb"
    args = [command, "--prompt", "a red cube", *_models(command, pairing, priors), "--preset", preset,
            "--config", str(configs[command]), "--out", str(out), "--device", "cpu", "--quiet"]
    if command != "generate":
        args += ["--mesh", str(mesh)]
    assert main(args) == 0
    _check_result(out, validate_if_present)


@pytest.mark.parametrize(("preset", "pairing"), RUNS)
def test_image_to_3d_runs_every_preset(setup, tmp_path, validate_if_present, capsys, preset, pairing):
    """No prompt: the picture's condition is learned on each prior (IF-like pixels with learned variance, SD-like
    latents through the VAE), then both stages run with the reference view."""
    priors, configs, _, _ = setup
    out = tmp_path / f"image-{preset}.glb"
    picture = configs["image"].parent / "picture.png"
    assert main(["generate", "--image", str(picture), "--elevation", "15", *_models("generate", pairing, priors),
                 "--preset", preset, "--config", str(configs["image"]), "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    _check_result(out, validate_if_present)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["image"] == "picture.png" and 0.0 <= summary["reference"]["iou"] <= 1.0
    assert "picture" in summary["seconds"]


@pytest.mark.parametrize("preset", PRESETS)
def test_reconstruct_runs_every_preset(setup, tmp_path, validate_if_present, preset):
    _, configs, _, images = setup
    out = tmp_path / f"reconstruct-{preset}.glb"
    assert main(["reconstruct", "--images", str(images), "--preset", preset, "--config", str(configs["reconstruct"]),
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    _check_result(out, validate_if_present)
