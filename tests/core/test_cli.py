"""The command line: bad input exits 2 with a message that says what to do, and writes nothing."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamsmith.core.app.cli import main


def _dataset(folder: Path, n: int = 3, size: int = 8, matrix=None) -> Path:
    (folder / "train").mkdir(parents=True)
    frames = []
    for i in range(n):
        Image.fromarray(np.full((size, size, 4), 200, np.uint8)).save(folder / "train" / f"r_{i}.png")
        m = matrix if matrix is not None else [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": m})
    (folder / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return folder


def _run(args, capsys):
    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "no_frames", "unreadable", "bad_matrix", "bad_out"])
def test_bad_input_exit_2_and_no_output(tmp_path, capsys, case):
    out = tmp_path / "out.glb"
    data = tmp_path / "data"
    expect = {"missing": "does not exist", "no_frames": "frames", "unreadable": "r_1",
              "bad_matrix": "4x4", "bad_out": ".glb or .obj"}[case]
    if case == "missing":
        pass
    elif case == "no_frames":
        data.mkdir()
        (data / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": []}))
    elif case == "unreadable":
        _dataset(data)
        (data / "train" / "r_1.png").write_bytes(b"not a png")
    elif case == "bad_matrix":
        _dataset(data, matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    elif case == "bad_out":
        _dataset(data)
        out = tmp_path / "out.fbx"
    rc, err = _run(["reconstruct", "--images", str(data), "--out", str(out), "--quiet"], capsys)
    assert rc == 2
    assert expect.lower() in err.lower(), err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["data"] if data.exists() else [])


def test_unknown_preset_and_unknown_config_key(tmp_path):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "o.glb"
    proc = subprocess.run([sys.executable, "-m", "dreamsmith", "reconstruct", "--images", str(data), "--out", str(out),
                           "--preset", "ultra"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and "draft" in proc.stderr
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"coarse": {"stepz": 3}}))
    proc = subprocess.run([sys.executable, "-m", "dreamsmith", "reconstruct", "--images", str(data), "--out", str(out),
                           "--config", str(cfg), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "coarse.stepz" in proc.stderr
    assert not out.exists()


def test_each_jobs_inputs_are_declared_once_and_every_option_names_its_default():
    """The command line's options, the worker's checks and the batch's file inputs all come from protocol.Job's
    input fields; an option that is not required (nor a switch) says its default."""
    import argparse

    from dreamsmith.core.app.batch.jobs_file import FILE_FIELDS
    from dreamsmith.core.app.cli import build_parser
    from dreamsmith.core.app.worker import parse_job
    from dreamsmith.core.jobs import JOBS
    from dreamsmith.core.runtime.errors import InputError
    from dreamsmith.protocol import COMMANDS, job_inputs

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, kind in JOBS.items():
        actions = {a.dest: a for a in sub.choices[name]._actions if a.dest != "help"}
        declared = {k: s for k, s in job_inputs(name).items() if s.flag}
        assert set(kind.inputs) == set(job_inputs(name)) and set(declared) <= set(actions), name
        for key, spec in declared.items():
            assert actions[key].option_strings == [spec.flag] and actions[key].required == (name in spec.needed_by)
        for action in actions.values():
            if action.nargs != 0:  # a switch is off unless given
                assert action.required or "default" in (action.help or ""), (name, action.dest, action.help)
    def every_option(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from every_option(child, (*path, name))
            elif action.option_strings and action.dest != "help":
                yield path, action

    for path, action in every_option(build_parser()):  # batch, models, estimate too
        if action.nargs != 0 and not action.required:
            assert "default" in (action.help or ""), (path, action.option_strings, action.help)
    assert set(FILE_FIELDS) == {"mesh", "target", "image", "state"}
    for command in COMMANDS:
        for key, spec in job_inputs(command).items():
            if command in spec.needed_by:  # the worker refuses the job without it, naming it
                job = {"command": command, "out": "x.glb", **{k: "x" for k in job_inputs(command) if k != key
                                                              and command in job_inputs(command)[k].needed_by}}
                with pytest.raises(InputError, match=f"needs a '{key}'"):
                    parse_job(job)
