"""Image to 3D end to end with the toy prior at the draft preset: pictures rendered here of objects the prior knows,
from views the engine is not told the azimuth of, with and without alpha, with and without a prompt. The result's
shape (nearest primitive by Chamfer, as ``scripts/sweep_image_to_3d.py`` judges) and colour must be the picture's,
and it must look like the picture from the picture's camera. The 16-picture sweep is the script's (README)."""

from __future__ import annotations

import json

import pytest

from dreamsmith.core.app.cli import main
from dreamsmith.core.meshio import read_mesh
from dreamsmith.eval.pictures import render_picture, write_picture
from dreamsmith.eval.shapes import judge, primitives


@pytest.fixture(scope="module")
def prims():
    return primitives()


@pytest.mark.parametrize(("shape", "colour", "azimuth", "elevation", "alpha", "prompt"), [
    ("cone", "blue", 40.0, 10.0, False, ""),  # a JPEG on white, no prompt: the picture alone
    ("torus", "yellow", 200.0, 30.0, True, "a yellow torus"),  # alpha, seen from above the side, with its words
])
def test_picture_becomes_its_object(tmp_path, capsys, prims, shape, colour, azimuth, elevation, alpha, prompt):
    pic = write_picture(tmp_path / f"{shape}.{'png' if alpha else 'jpg'}",
                        render_picture(shape, colour, azimuth, elevation, alpha=alpha))
    out = tmp_path / f"{shape}.glb"
    args = ["generate", "--image", str(pic), "--elevation", str(elevation), "--out", str(out), "--device", "cpu",
            "--quiet"] + (["--prompt", prompt] if prompt else [])
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = judge(out, prims)
    assert got["shape"] == shape and got["shape_bbox"] == shape, got  # by the surface and by the box alike
    assert got["colour"] == colour, got
    assert summary["reference"]["iou"] >= 0.85, summary
    assert summary["reference"]["colour_error"] < 0.1, summary
    assert read_mesh(out)[0].shape[0] > 100
    if prompt:  # the words given guide the unseen sides; no caption is looked for
        assert "caption" not in summary and "caption_set_aside" not in summary, summary
    else:  # the draft's condition without words: the caption the prior reads from high noise, clear and right
        assert summary.get("caption") == f"a {colour} {shape}", summary
