"""Bad input of every kind is refused before any work: exit 2, one ``error:`` line that says what to do, no
traceback, and no file created. Built by category: paths, numbers, mesh files, datasets, configs, state files."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
import torch
from PIL import Image

from dreamsmith.core.app.cli import main
from dreamsmith.core.meshio import TexturedMesh, read_mesh, write_glb, write_obj
from dreamsmith.core.runtime.errors import ResourceError, as_user_error

TOY = Path(__file__).resolve().parents[2] / "assets" / "demo_prior"


def _box() -> TexturedMesh:
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                  [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int64)
    return TexturedMesh(v, f, np.zeros((8, 2), np.float32), None, np.full((4, 4, 3), 128, np.uint8))


def _dataset(folder: Path, angle: float = 0.7, matrix=None) -> Path:
    (folder / "train").mkdir(parents=True)
    frames = []
    for i in range(3):
        Image.fromarray(np.full((8, 8, 4), 200, np.uint8)).save(folder / "train" / f"r_{i}.png")
        m = matrix or [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": m})
    (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return folder


def _glb(path: Path, change) -> Path:
    write_glb(_box(), path)
    gltf = gl.GLTF2().load(str(path))
    change(gltf)
    gltf.save_binary(str(path))
    return path


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _refused(args: list[str], root: Path, capsys, expect: str) -> str:
    """Run the CLI on ``args``: exit 2, the expected message, no traceback, nothing new under ``root``."""
    before = _files(root)
    t0 = time.perf_counter()
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert expect.lower() in err.lower(), err
    assert _files(root) == before, "a refused job left files behind"
    assert time.perf_counter() - t0 < 60  # refused before training, not after
    return err


def _edit_args(tmp_path: Path, mesh: Path, *extra: str) -> list[str]:
    return ["retexture", "--mesh", str(mesh), "--prompt", "a red cube", "--model", str(TOY), "--device", "cpu",
            "--out", str(tmp_path / "out" / "r.glb"), "--quiet", *extra]


# --------------------------------------------------------------------------------------------------- mesh files
MESH_CASES = {
    "gltf_component_type": ("glb", lambda g: setattr(g.accessors[0], "componentType", 9999), "malformed"),
    "gltf_node_mesh": ("glb", lambda g: setattr(g.nodes[0], "mesh", 7), "malformed"),
    "gltf_accessor_index": ("glb", lambda g: g.meshes[0].primitives[0].attributes.__setattr__("POSITION", 42),
                            "malformed"),
    "obj_two_numbers": ("obj", "v 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "three coordinates"),
    "obj_uneven": ("obj", "v 0 0 0\nv 1 0 0 1\nv 0 1\nf 1 2 3\n", "three coordinates"),
    "obj_bad_index": ("obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "outside"),
    "obj_text": ("obj", "v a b c\nf 1 2 3\n", "not a valid obj"),
    "zero_area": ("obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "no surface area"),
    "nan": ("obj", "v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "nan"),
}


@pytest.mark.parametrize("case", sorted(MESH_CASES))
def test_broken_meshes_are_refused(tmp_path, capsys, case):
    kind, content, expect = MESH_CASES[case]
    mesh = tmp_path / f"in.{kind}"
    if kind == "glb":
        _glb(mesh, content)
    else:
        mesh.write_text(content)
    _refused(_edit_args(tmp_path, mesh), tmp_path, capsys, expect)


# --------------------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("case,expect", [("angle_zero", "field of view"), ("angle_huge", "field of view"),
                                         ("singular", "singular")])
def test_bad_cameras_are_refused(tmp_path, capsys, case, expect):
    if case == "singular":
        data = _dataset(tmp_path / "d", matrix=[[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]])
    else:
        data = _dataset(tmp_path / "d", angle=0.0 if case == "angle_zero" else 7.0)
    _refused(["reconstruct", "--images", str(data), "--out", str(tmp_path / "o.glb"), "--quiet"], tmp_path, capsys,
             expect)


# --------------------------------------------------------------------------------------------------- numbers, configs
@pytest.mark.parametrize("extra,expect", [
    (["--seed", str(2**64)], "seed"),
    (["--seed", "-1"], "seed"),
    (["--config", "{cfg}", "bake.texture_size=0"], "texture_size"),
    (["--config", "{cfg}", "mesh.steps=-3"], "steps"),
    (["--config", "{cfg}", "fine_guidance.guidance_scale=NaN"], "finite"),
    (["--config", "{cfg}", "mesh.lr.color=0"], "greater than 0"),
    (["--config", "{cfg}", "mesh_sds.shading.mode=glossy"], "shading"),
    (["--config", "{cfg}", "mesh_sds.shading.background=grey"], "background"),
])
def test_bad_numbers_and_configs_are_refused(tmp_path, capsys, extra, expect):
    mesh = write_glb(_box(), tmp_path / "in.glb")
    if extra[0] == "--config":
        key, value = extra[2].split("=")
        value = value if not value.lstrip("-").replace(".", "").isdigit() and value != "NaN" else \
            (float(value) if value == "NaN" else int(value))
        for part in reversed(key.split(".")):  # "mesh.lr.color" -> {"mesh": {"lr": {"color": value}}}
            value = {part: value}
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps(value))
        extra = ["--config", str(cfg)]
    _refused(_edit_args(tmp_path, mesh, *extra), tmp_path, capsys, expect)


# --------------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("case,expect", [
    ("out_under_file", "is a file"),
    ("out_is_folder", "is a folder"),
    ("preview_is_obj_texture", "same file"),
    ("preview_is_out", "same file"),
    ("state_is_out", "same file"),
    ("missing_mesh", "not found"),
    ("missing_state", "no saved engine state"),
    ("state_only_tag", "incomplete or damaged"),
])
def test_bad_paths_are_refused(tmp_path, capsys, case, expect):
    mesh = write_glb(_box(), tmp_path / "in.glb")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    base = ["--prompt", "a red cube", "--model", str(TOY), "--device", "cpu", "--quiet"]
    out = tmp_path / "out.glb"
    args = ["generate", *base, "--out", str(out), "--save-state", str(tmp_path / "s.safetensors")]
    if case == "out_under_file":
        args = ["generate", *base, "--out", str(blocker / "sub" / "out.glb"), "--save-state",
                str(tmp_path / "s.safetensors")]
    elif case == "out_is_folder":
        (tmp_path / "dir.glb").mkdir()
        args = ["generate", *base, "--out", str(tmp_path / "dir.glb")]
    elif case == "preview_is_obj_texture":
        args = ["generate", *base, "--out", str(tmp_path / "x.obj"), "--preview", str(tmp_path / "x.png")]
    elif case == "preview_is_out":
        args = ["generate", *base, "--out", str(tmp_path / "x.glb"), "--preview", str(tmp_path / "x.glb")]
        expect = ".png"  # caught by its ending first
    elif case == "state_is_out":
        args = ["generate", *base, "--out", str(out), "--save-state", str(tmp_path / "out.glb")]
        expect = ".safetensors"
    elif case == "missing_mesh":
        args = ["retexture", *base, "--mesh", str(tmp_path / "nope.glb"), "--out", str(out)]
    elif case == "missing_state":
        args = ["edit", *base, "--mesh", str(mesh), "--state", str(tmp_path / "typo.safetensors"), "--out", str(out)]
    elif case == "state_only_tag":
        from safetensors.torch import save_file

        from dreamsmith.core.scene.state import FORMAT

        state = tmp_path / "tag.safetensors"
        save_file({"x": torch.zeros(1)}, str(state), metadata={"format": FORMAT})
        args = ["edit", *base, "--mesh", str(mesh), "--state", str(state), "--out", str(out)]
    _refused(args, tmp_path, capsys, expect)


def test_obj_and_its_preview_never_share_a_file(tmp_path):
    from dreamsmith.core.jobs.io import check_output_path
    from dreamsmith.core.runtime.errors import InputError

    with pytest.raises(InputError, match="same file"):
        check_output_path(tmp_path / "x.obj", tmp_path / "x.png")
    assert check_output_path(tmp_path / "x.obj", tmp_path / "y.png") == tmp_path / "x.obj"


# --------------------------------------------------------------------------------------------------- file formats
def test_user_strings_never_break_an_obj(tmp_path):
    mesh = _box()
    mesh.name = "a red\ncube\rwith\tf 1 2 3 #comment"
    write_obj(mesh, tmp_path / "m.obj")
    lines = (tmp_path / "m.obj").read_text().splitlines()
    o_lines = [ln for ln in lines if ln.startswith("o ")]
    assert len(o_lines) == 1 and len(o_lines[0].split()) == 2, o_lines
    assert sum(ln.startswith("f ") for ln in lines) == 12
    verts, faces, _, _ = read_mesh(tmp_path / "m.obj")
    assert faces.shape == (12, 3)


def test_user_strings_are_escaped_in_gltf(tmp_path):
    prompt = 'a "quoted"\nprompt}\\ with ü'
    path = write_glb(_box(), tmp_path / "m.glb", extras={"prompt": prompt})
    gltf = gl.GLTF2().load(str(path))
    assert gltf.nodes[0].extras["prompt"] == prompt


# --------------------------------------------------------------------------------------------------- resources
def test_resource_failures_are_named():
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    for exc in (oom, MemoryError(), RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"),
                OSError(errno.ENOSPC, "No space left on device", "/tmp/x.glb")):
        err = as_user_error(exc)
        assert isinstance(err, ResourceError), exc
        assert ("preset" in str(err) and "texture size" in str(err)) or "disk is full" in str(err)
    assert as_user_error(ValueError("a bug")) is None
    assert as_user_error(RuntimeError("shape mismatch")) is None


def test_out_of_memory_in_a_run_exits_2_with_what_to_lower(tmp_path, capsys, monkeypatch):
    from dreamsmith.core.jobs import generate

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(generate, "generate_mesh", boom)
    _refused(["generate", "--prompt", "a red cube", "--model", str(TOY), "--device", "cpu", "--quiet", "--out",
              str(tmp_path / "o.glb")], tmp_path, capsys, "out of memory")


def test_a_job_that_cannot_fit_is_refused_with_its_estimate_before_any_work(tmp_path, capsys):
    """Standard with Stable Diffusion 2.1 on a CPU: hundreds of hours. Refused with the estimate and what to choose
    instead, before the model is even looked for (it is not on this machine) and with nothing written."""
    out = tmp_path / "x.glb"
    assert main(["generate", "--prompt", "a red cube", "--preset", "standard", "--device", "cpu", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "standard preset would take about" in err and "days" in err and "on CPU" in err
    assert "--device cuda" in err and "draft" in err and "--force" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_the_estimate_refuses_what_does_not_fit_and_force_runs_it():
    from dreamsmith.core.jobs.generate import generate_config
    from dreamsmith.core.runtime.estimate import Estimate, check_fits, estimate_job

    draft = estimate_job("generate", generate_config("draft"), "cpu")
    assert 30 < draft.seconds < 600 and draft.peak_gib < 2  # the demo on a CPU: minutes
    check_fits(draft, None, "draft")
    fast, std = (estimate_job("generate", generate_config(p), "cuda") for p in ("fast", "standard"))
    assert fast.seconds < std.seconds / 3 and std.peak_gib < 8.0
    big = Estimate(600.0, 12.0, "cuda", {}, "test")
    with pytest.raises(ResourceError, match=r"needs about 10 min and 12.0 GB on CUDA but the GPU has 8.0 GB free"):
        check_fits(big, 8.0, "standard")
    check_fits(big, 8.0, "standard", force=True)
    check_fits(big, 16.0, "standard")


def test_every_job_of_every_preset_has_an_estimate():
    """Each command's own config (re-texturing and reconstruction have no coarse volume renderer), at each preset,
    on either kind of device: a positive time for every stage and memory."""
    from dreamsmith.core.jobs import JOBS
    from dreamsmith.core.runtime.estimate import estimate_job
    from dreamsmith.protocol import PRESET_NAMES

    for command, kind in JOBS.items():
        for preset in PRESET_NAMES:
            for device in ("cpu", "cuda"):
                cost = estimate_job(command, kind.config(preset, {}), device)
                assert cost.seconds > 0 and cost.peak_gib > 0, (command, preset, device)
                assert all(s >= 0 for s in cost.stages.values()), (command, preset, device, cost.stages)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_estimate_weighs_the_renderer_and_the_bake_by_the_preset(device):
    """high renders twice the samples a ray, a finer tet grid and a larger texture than standard: it must cost more
    in each of those stages, and exactly standard's once those three are set back."""
    from dreamsmith.core.jobs.generate import generate_config
    from dreamsmith.core.runtime.estimate import estimate_job

    std, high = (estimate_job("generate", generate_config(p), device) for p in ("standard", "high"))
    for stage in ("coarse", "mesh", "bake"):
        assert high.stages[stage] > std.stages[stage], stage
    assert high.stages["coarse"] > 1.1 * std.stages["coarse"] and high.peak_gib > std.peak_gib
    back = {"coarse": {"volume": {"n_samples_per_ray": 256}}, "mesh": {"dmtet": {"resolution": 128}},
            "bake": {"texture_size": 1024}}
    same = estimate_job("generate", generate_config("high", back), device)
    assert same.stages == pytest.approx(std.stages) and same.peak_gib == pytest.approx(std.peak_gib)


def test_the_estimate_command_says_what_a_job_would_cost_and_whether_it_runs(capsys):
    assert main(["estimate", "generate", "--preset", "draft", "--device", "cpu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["problem"] == "" and info["device_name"] == "CPU" and info["preset"] == "draft"
    assert set(info["stages"]) >= {"coarse", "mesh"} and 0 < info["seconds"] < 3600
    assert main(["estimate", "generate", "--preset", "standard", "--device", "cpu"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("generate at standard on CPU: about") and "refused:" in out and "--force" in out
