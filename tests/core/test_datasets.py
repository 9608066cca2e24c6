import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dreamsmith.core.runtime.errors import InputError
from dreamsmith.core.scene.cameras import orbit_cameras
from dreamsmith.core.scene.datasets import available_splits, load_posed_images
from dreamsmith.eval.synth_objects import (
    ground_truth_mesh,
    main,
    render,
    render_views,
    sphere_object,
    write_dataset,
)


def _c2w(i: int) -> list[list[float]]:
    m = np.eye(4)
    m[:3, 3] = [0.1 * i, -2.0, 0.5]
    return m.tolist()


def _write_json(folder, meta, name="transforms.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(meta))


def _png(path, w=4, h=4, mode="RGBA", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (w, h), (value,) * len(mode)).save(path)


# ---------------------------------------------------------------------------------------------- conventions


def test_nerf_synthetic_folder_roundtrips_renders_and_cameras(tmp_path):
    write_dataset("box_ball", tmp_path, n_train=3, n_test=2, size=24, seed=1)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    assert meta["frames"][0]["file_path"] == "./train/r_0"  # NeRF-synthetic: no extension
    assert available_splits(tmp_path) == ["test", "train"]

    train = load_posed_images(tmp_path)
    test = load_posed_images(tmp_path, split="test")
    assert train.images.shape == (3, 24, 24, 4) and test.images.shape == (2, 24, 24, 4)
    assert train.names == ["train/r_0.png", "train/r_1.png", "train/r_2.png"]
    expected, cams = render_views("box_ball", 3, 24, seed=1, split="train")
    assert (train.images - expected).abs().max() <= 0.51 / 255  # only 8-bit quantisation
    assert 0.02 < float(train.images[..., 3].mean()) < 0.9  # the object is in view, not filling it
    assert torch.allclose(train.cameras.c2w, cams.c2w, atol=1e-6)
    f = 12 / math.tan(math.radians(20))
    assert torch.allclose(train.cameras.fx, torch.full((3,), f)) and torch.allclose(train.cameras.fy, train.cameras.fx)
    assert torch.allclose(train.cameras.cx, torch.full((3,), 12.0)) and train.cameras.width == 24
    assert not torch.allclose(test.cameras.c2w[:2], train.cameras.c2w[:2])  # held-out views differ


def test_instant_ngp_single_json_with_pixel_intrinsics_and_no_alpha(tmp_path):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    names = ["images/0001.jpg", "images/0002.png", "images/0003.jpeg"]
    for name, col in zip(names, colours, strict=True):
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.new("RGB", (20, 12), col).save(tmp_path / name, quality=95)
    frames = [{"file_path": n, "transform_matrix": _c2w(i)} for i, n in enumerate(names)]
    frames[2]["fl_x"] = 31.0  # per-frame intrinsics override the top level
    _write_json(tmp_path, {"fl_x": 30.0, "fl_y": 28.0, "cx": 9.5, "cy": 6.25, "w": 20, "h": 12, "aabb_scale": 4,
                           "frames": frames})
    data = load_posed_images(tmp_path)
    assert data.images.shape == (3, 12, 20, 4) and data.names == names
    assert torch.all(data.images[..., 3] == 1.0)  # no alpha channel -> opaque
    for i, col in enumerate(colours):
        assert torch.allclose(data.images[i, 6, 10, :3], torch.tensor(col) / 255.0, atol=0.03)
    assert data.cameras.fx.tolist() == [30.0, 30.0, 31.0] and data.cameras.fy.tolist() == [28.0] * 3
    assert data.cameras.cx.tolist() == [9.5] * 3 and data.cameras.cy.tolist() == [6.25] * 3
    assert torch.allclose(data.cameras.c2w[1], torch.tensor(_c2w(1), dtype=torch.float32))
    with pytest.raises(InputError, match="available splits: train"):
        load_posed_images(tmp_path, split="test")


def test_rendered_sphere_centroid_lands_where_the_cameras_project_its_centre(tmp_path):
    # Cameras aim away from the sphere, so it appears off-centre in a non-square frame: a flipped axis, a swapped
    # cx/cy or a half-pixel shift anywhere between renderer, writer and reader moves the centroid.
    cams = orbit_cameras(torch.tensor([20.0, 140.0, 260.0]), torch.tensor([-10.0, 25.0, 60.0]), 3.0, 40.0, 40, 32,
                         target=(0.35, -0.25, 0.3))
    images = render(sphere_object(radius=0.3), cams)
    for i in range(3):
        Image.fromarray((images[i].numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(tmp_path / f"v{i}.png")
    frames = [{"file_path": f"v{i}.png", "transform_matrix": cams.c2w[i].tolist()} for i in range(3)]
    _write_json(tmp_path, {"fl_y": float(cams.fy[0]), "fl_x": float(cams.fx[0]), "frames": frames})
    data = load_posed_images(tmp_path)
    uv, depth = data.cameras.pixel_coords(torch.zeros(1, 3))  # [3, 1, 2]
    alpha = data.images[..., 3]  # [3, H, W]
    jj = torch.arange(40) + 0.5
    ii = torch.arange(32) + 0.5
    for i in range(3):
        a = alpha[i]
        centroid = torch.stack([(a.sum(0) * jj).sum(), (a.sum(1) * ii).sum()]) / a.sum()
        assert (uv[i, 0] - torch.tensor([20.0, 16.0])).norm() > 3  # really off-centre
        assert (centroid - uv[i, 0]).norm() < 0.2, (i, centroid, uv[i, 0])  # measured: 0.08-0.12 px
        # Antialiased edges: fractional coverage exists, and the disc area matches the projected radius.
        assert ((a > 0.05) & (a < 0.95)).any()
        r_px = float(data.cameras.fx[i]) * 0.3 / math.sqrt(float(depth[i, 0]) ** 2 - 0.09)
        assert float(a.sum()) == pytest.approx(math.pi * r_px ** 2, rel=0.05)


def test_max_size_downsamples_without_colour_bleeding(tmp_path):
    img = np.zeros((6, 8, 4), np.uint8)
    img[..., 1] = 255  # transparent pixels carry green garbage
    img[::2, ::2] = (255, 0, 0, 255)  # one opaque red pixel per 2x2 block
    (tmp_path / "a").mkdir()
    Image.fromarray(img, "RGBA").save(tmp_path / "a" / "r_0.png")
    _write_json(tmp_path, {"camera_angle_x": 0.8, "frames": [{"file_path": "./a/r_0", "transform_matrix": _c2w(0)}]})
    data = load_posed_images(tmp_path, max_size=4)
    assert data.images.shape == (1, 3, 4, 4) and (data.cameras.width, data.cameras.height) == (4, 3)
    assert torch.allclose(data.images[0, ..., 3], torch.full((3, 4), 0.25), atol=1e-3)
    assert torch.allclose(data.images[0, ..., :3], torch.tensor([1.0, 0.0, 0.0]).expand(3, 4, 3), atol=1e-3)
    assert float(data.cameras.fx[0]) == pytest.approx(0.5 * 4 / math.tan(0.4), rel=1e-5)
    assert (float(data.cameras.cx[0]), float(data.cameras.cy[0])) == (2.0, 1.5)


# ---------------------------------------------------------------------------------------------- bad input


def _valid(folder):
    for i in range(2):
        _png(folder / "train" / f"r_{i}.png")
    return {"camera_angle_x": 0.7,
            "frames": [{"file_path": f"./train/r_{i}", "transform_matrix": _c2w(i)} for i in range(2)]}


def _case_invalid_json(folder):
    _valid(folder)
    (folder / "transforms.json").write_text('{"frames": [')


def _mutate(fn):
    def make(folder):
        meta = _valid(folder)
        fn(meta, folder)
        _write_json(folder, meta)
    return make


def _garbage(meta, folder):
    (folder / "train" / "r_0.png").write_bytes(b"not a png at all")


def _other_size(meta, folder):
    _png(folder / "train" / "r_1.png", w=6, h=4)


BAD = {
    "missing folder": (lambda folder: None, "does not exist"),
    "no json": (lambda folder: folder.mkdir(), "No transforms.json"),
    "invalid json": (_case_invalid_json, "not valid JSON"),
    "no frames": (_mutate(lambda m, f: m.update(frames=[])), "no frames"),
    "frames key missing": (_mutate(lambda m, f: m.pop("frames")), "no frames"),
    "no file_path": (_mutate(lambda m, f: m["frames"][1].pop("file_path")), "Frame 1 .*'file_path'"),
    "no matrix": (_mutate(lambda m, f: m["frames"][0].pop("transform_matrix")), "Frame 0 .*'transform_matrix'"),
    "image missing": (_mutate(lambda m, f: m["frames"][1].update(file_path="./train/r_9")), r"train/r_9.*missing"),
    "image unreadable": (_mutate(_garbage), r"Cannot read image .*r_0\.png"),
    "matrix 3x4": (_mutate(lambda m, f: m["frames"][1].update(transform_matrix=_c2w(1)[:3])),
                   r"Frame 1 .*4x4, found shape \(3, 4\)"),
    "no intrinsics": (_mutate(lambda m, f: m.pop("camera_angle_x")), "camera_angle_x.*fl_x"),
    "sizes differ": (_mutate(_other_size), r"same size.*r_0\.png is 4x4 .*r_1\.png is 6x4"),
    "exr": (_mutate(lambda m, f: m["frames"][0].update(file_path="./train/r_0.exr")), "convert them to PNG"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_input_error_saying_what_is_wrong(tmp_path, case):
    make, pattern = BAD[case]
    folder = tmp_path / "data"
    make(folder)
    with pytest.raises(InputError, match=pattern):
        load_posed_images(folder)


def test_valid_base_of_the_bad_cases_loads(tmp_path):
    meta = _valid(tmp_path)
    _write_json(tmp_path, meta)
    data = load_posed_images(tmp_path)
    assert data.images.shape == (2, 4, 4, 4) and torch.allclose(data.images, torch.full((2, 4, 4, 4), 128 / 255))


# ---------------------------------------------------------------------------------------------- synthetic tools


def test_ground_truth_mesh_is_the_true_surface_facing_outwards():
    verts, faces = ground_truth_mesh(sphere_object(radius=2.5, center=(3.0, -2.0, 1.0)), resolution=48)
    r = np.linalg.norm(verts - np.array([3.0, -2.0, 1.0]), axis=1)
    assert np.abs(r - 2.5).max() < 0.01
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    volume = np.einsum("ij,ij->i", a - verts.mean(0), np.cross(b - verts.mean(0), c - verts.mean(0))).sum() / 6
    assert volume == pytest.approx(4 / 3 * math.pi * 2.5 ** 3, rel=0.02)  # positive: counter-clockwise outside


def test_cli_writes_a_loadable_dataset(tmp_path):
    assert main(["--object", "snowman", "--out", str(tmp_path), "--size", "16", "--train", "2", "--test", "1"]) == 0
    data = load_posed_images(tmp_path, "test")
    assert data.images.shape == (1, 16, 16, 4) and float(data.images[..., 3].max()) == 1.0
