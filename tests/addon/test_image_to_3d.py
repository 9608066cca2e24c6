"""Image to 3D in a real bpy (each script in a subprocess, see test_operators): the sidebar's From text / From image
inputs, the pictures Generate refuses before starting anything, the job it sends (a file on disk by its absolute
path, an image data-block without one written as a PNG into the job's folder, the user's data-block untouched), and
the result placed and labelled like a text result, with the picture's name on it.

Most of it runs against a stand-in engine (a script in place of the interpreter that records the job and answers
with a prepared GLB); one test runs the real engine with the demo prior and a few steps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image
from test_operators import COMMON, REPO, TINY, _run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

#: A red disc on a transparent background (the kind of picture image to 3D wants), top row first.
DISC = np.zeros((48, 64, 4), np.uint8)
_yy, _xx = np.mgrid[:48, :64]
DISC[(_yy - 24) ** 2 + (_xx - 32) ** 2 < 15 ** 2] = (220, 30, 30, 255)
#: A painted picture without transparency: a blue square on white, with one odd pixel to tell up from down.
PAINTED = np.full((24, 32, 4), 255, np.uint8)
PAINTED[6:18, 10:22, :3] = (20, 40, 210)
PAINTED[0, 0, :3] = (0, 255, 0)

PANEL = COMMON + r"""
from types import SimpleNamespace
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import panels
props = bpy.context.scene.dreamsmith
REPORT["defaults"] = [props.source, props.image is None, props.image_path, props.elevation, props.fov]
rna = props.bl_rna.properties
REPORT["sources"] = [i.identifier for i in rna["source"].enum_items]
REPORT["image_type"] = rna["image"].fixed_type.identifier
REPORT["path_subtype"] = rna["image_path"].subtype
REPORT["ranges"] = [rna["elevation"].hard_min, rna["elevation"].hard_max, rna["fov"].hard_min, rna["fov"].hard_max]
op = bpy.ops.dreamsmith.generate.get_rna_type().properties
REPORT["op_props"] = {n: [op[n].subtype, op[n].is_skip_save] for n in ("image_path", "elevation", "fov")}

draw = draw_panels

REPORT["text"] = draw()
props.source = "IMAGE"
REPORT["image"] = draw()
addon_utils.disable("dreamsmith", default_set=True)
REPORT["gone"] = not hasattr(bpy.types.Scene, "dreamsmith")
print("REPORT " + json.dumps(REPORT))
"""


def test_sidebar_switches_between_text_and_image_inputs():
    rep = _run(PANEL, {})
    assert rep["defaults"] == ["TEXT", True, "", 0.0, 0.0] and rep["sources"] == ["TEXT", "IMAGE"]
    assert rep["image_type"] == "Image" and rep["path_subtype"] == "FILE_PATH"
    assert rep["ranges"] == [-89.0, 89.0, 0.0, 120.0]
    assert rep["op_props"] == {"image_path": ["FILE_PATH", True], "elevation": ["NONE", True], "fov": ["NONE", True]}
    text, image = rep["text"], rep["image"]
    for log in (text, image):  # the switch, and the rest of the sidebar as before
        assert ["prop", "source", ""] in log and ["operator", "dreamsmith.generate", "Generate"] in log
        assert ["prop", "negative_prompt", ""] in log and ["operator", "dreamsmith.edit", ""] in log
    assert ["prop", "prompt", "Prompt"] in text
    assert not any(c[0] == "template_ID" or c[1:2] in (["image_path"], ["elevation"], ["fov"]) for c in text)
    assert ["template_ID", "image", ""] in image  # pick (or open) an image in the file
    for name in ("image_path", "elevation", "fov"):
        assert ["prop", name, ""] in image
    assert ["prop", "prompt", "Prompt (Optional)"] in image and rep["gone"]


BAD = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
props = bpy.context.scene.dreamsmith
lost = bpy.data.images.new("Lost", 8, 8)
lost.source, lost.filepath = "FILE", "/no/such/folder/lost.png"  # its file went away
before = counts()
REPORT["missing"] = generate(image_path="/no/such/picture.png", prompt="")
REPORT["empty_text"] = generate(prompt="  ")
props.source = "IMAGE"
REPORT["none_picked"] = generate()
REPORT["fov"] = generate(image_path=ARGS["png"], fov=5.0)
props.image = lost
REPORT["lost_file"] = generate()
props.image, props.image_path = None, "//relative/missing.png"
REPORT["missing_sidebar"] = generate()
REPORT["unchanged"] = counts() == before
REPORT["job_dirs"] = job_dirs()
REPORT["idle"] = bpy.ops.dreamsmith.generate.poll() and not bpy.context.window_manager.dreamsmith_job.running
print("REPORT " + json.dumps(REPORT))
"""


def test_bad_pictures_are_refused_before_anything_starts(tmp_path):
    png = tmp_path / "disc.png"
    Image.fromarray(DISC).save(png)
    rep = _run(BAD, {"png": str(png)})
    error = "RuntimeError: Error: "
    assert rep["missing"] == error + "The picture '/no/such/picture.png' was not found; choose a PNG or JPEG file " \
                                     "that exists.\n"
    assert rep["empty_text"].startswith(error + "The prompt is empty:") and "Source to Picture" in rep["empty_text"]
    assert "image_path" not in rep["empty_text"]  # what an artist can do in the sidebar, not a script's keyword
    assert rep["none_picked"].startswith(error + "No picture: pick an image")
    assert rep["fov"].startswith(error + "The field of view must be between 10 and 120 degrees")
    assert "(got 5)" in rep["fov"]
    assert rep["lost_file"].startswith(error + "The file of the image 'Lost' was not found")
    assert rep["missing_sidebar"].startswith(error + "The picture '//relative/missing.png' was not found")
    assert rep["unchanged"] and rep["job_dirs"] == [] and rep["idle"]


STAND_IN = """#!{python}
# Stands in for the engine's interpreter: records the job and its picture, answers with a prepared GLB.
import json, os, shutil, sys
if sys.argv[2:3] and sys.argv[2].startswith("import importlib, importlib.util"):  # what it has: an engine on a CPU
    print('DREAMSMITH {{"python": "3.11", "missing": [], "device": "cpu", "name": "CPU", "memory_gb": 0}}')
    sys.exit(0)
job = json.loads(sys.stdin.readline())
record = {record!r}
n = len([f for f in os.listdir(record) if f.endswith(".json")])
with open(os.path.join(record, f"{{n:02d}}.json"), "w") as f:
    json.dump(dict(job, job_folder_files=sorted(os.listdir(os.path.dirname(job["out"])))), f)
if job["image"]:
    shutil.copy(job["image"], os.path.join(record, f"{{n:02d}}-picture"))
shutil.copy({glb!r}, job["out"])
summary = {{"models": {{"coarse": "toy", "fine": "toy"}}}}
if job["image"]:
    summary |= {{"image": os.path.basename(job["image"]), "reference": {{"iou": 0.83, "colour_error": 0.1}}}}
    if not job["prompt"]:  # the engine's own caption of a picture given without words
        summary["caption"] = "a yellow disc"
print(json.dumps({{"type": "done", "out": job["out"], "summary": summary}}), flush=True)
"""

JOBS = COMMON + r"""
import numpy as np
addon_utils.enable("dreamsmith", default_set=True)
prefs = bpy.context.preferences.addons["dreamsmith"].preferences
prefs.python_path = ARGS["python"]
props = bpy.context.scene.dreamsmith
bpy.context.scene.cursor.location = (1.0, -2.0, 0.5)

def block_state(img):
    px = np.zeros(len(img.pixels), np.float32)
    img.pixels.foreach_get(px)
    return [img.name, img.source, img.filepath, img.filepath_raw, img.packed_file is not None, img.file_format,
            img.is_dirty, list(img.size), float(px.sum())]

def result(name):
    obj = bpy.data.objects.get(name)
    if obj is None:
        return None
    return {"props": {k: obj[k] for k in obj.keys() if k.startswith("dreamsmith_")}, "location": list(obj.location),
            "active": bpy.context.view_layer.objects.active == obj, "mesh": len(obj.data.polygons)}

# 1. a file given to the operator, no prompt: an image job with the operator's camera
before = counts()
REPORT["file"] = generate(image_path=ARGS["png"], elevation=15.0, fov=40.0, seed=3)
REPORT["file_delta"] = [a - b for a, b in zip(counts(), before)]
REPORT["file_obj"] = result("disc")
REPORT["file_message"] = bpy.context.window_manager.dreamsmith_job.message

# 2. a packed image picked in the sidebar (its file gone from disk), with a prompt and the sidebar's camera
packed = bpy.data.images.load(ARGS["packed_png"])
packed.pack()
os.remove(ARGS["packed_png"])
props.source, props.image, props.elevation, props.fov = "IMAGE", packed, -10.0, 0.0
state = block_state(packed)
REPORT["packed"] = generate(prompt="a red ball")
REPORT["packed_same"] = block_state(packed) == state
REPORT["packed_obj"] = result("a red ball")

# 3. an image painted in Blender (generated, never saved), no transparency
painted = bpy.data.images.new("Painted: blue/square", ARGS["painted_size"][0], ARGS["painted_size"][1], alpha=True)
painted.pixels.foreach_set(np.array(ARGS["painted_pixels"], np.float32))
state = block_state(painted)
props.image = painted
REPORT["painted"] = generate()
REPORT["painted_same"] = block_state(painted) == state
REPORT["painted_obj"] = result("Painted: blue/square")
REPORT["no_stray_images"] = sorted(i.name for i in bpy.data.images if i.name.startswith("Dreamsmith picture"))

# 4. an image with its PNG on disk, referenced relative to the saved .blend: used by its absolute path
bpy.ops.wm.save_as_mainfile(filepath=ARGS["blend"])
on_disk = bpy.data.images.load(ARGS["png"])
on_disk.filepath = bpy.path.relpath(ARGS["png"])
REPORT["relative"] = on_disk.filepath.startswith("//")
props = bpy.context.scene.dreamsmith
props.image = on_disk
REPORT["on_disk"] = generate(prompt="")

# 5. back to text: the sidebar's picture and camera are not sent
props.source = "TEXT"
REPORT["text"] = generate(prompt="a red cube")
REPORT["text_obj"] = result("a red cube")
REPORT["job_dirs"] = job_dirs()
print("REPORT " + json.dumps(REPORT))
"""


def _blender_pixels(top_down: np.ndarray) -> list[float]:
    """An RGBA uint8 picture (top row first) as Blender's ``Image.pixels`` (bottom row first, floats)."""
    return (np.flipud(top_down).astype(np.float32) / 255.0).ravel().tolist()


@pytest.mark.skipif(os.name != "posix", reason="the stand-in engine is a script with a #! line")
def test_image_jobs_send_the_picture_and_label_the_result(tmp_path):
    from dreamsmith.core.meshio import TexturedMesh, write_glb

    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]], np.int64)
    uvs = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9], [0.5, 0.5]], np.float32)
    glb = write_glb(TexturedMesh(verts, faces, uvs, None, np.full((8, 8, 3), 200, np.uint8), "x"), tmp_path / "r.glb")
    record = tmp_path / "record"
    record.mkdir()
    python = tmp_path / "stand-in-python"
    python.write_text(STAND_IN.format(python=sys.executable, record=str(record), glb=str(glb)))
    python.chmod(0o755)
    png, packed_png = tmp_path / "pictures" / "disc.png", tmp_path / "packed disc.png"
    png.parent.mkdir()
    Image.fromarray(DISC).save(png)
    Image.fromarray(DISC).save(packed_png)
    rep = _run(JOBS, {"python": str(python), "png": str(png), "packed_png": str(packed_png),
                      "blend": str(tmp_path / "scene.blend"), "painted_size": [PAINTED.shape[1], PAINTED.shape[0]],
                      "painted_pixels": _blender_pixels(PAINTED)})
    jobs = [json.loads(p.read_text()) for p in sorted(record.glob("*.json"))]
    assert len(jobs) == 5, json.dumps({k: v for k, v in rep.items() if k != "_stdout"})[:2500]
    done = "{'FINISHED'}"

    # 1. the operator's file: by its absolute path, the prompt empty, the operator's camera
    assert rep["file"] == done and rep["file_delta"] == [1, 1, 1, 1]
    assert (jobs[0]["command"], jobs[0]["image"], jobs[0]["prompt"]) == ("generate", str(png), "")
    assert (jobs[0]["elevation"], jobs[0]["fov"], jobs[0]["seed"]) == (15.0, 40.0, 3)
    obj = rep["file_obj"]  # named after the picture, placed and recorded like a text result
    assert obj is not None and obj["mesh"] == 6 and obj["location"] == [1.0, -2.0, 0.5] and obj["active"]
    assert obj["props"]["dreamsmith_image"] == "disc.png" and obj["props"]["dreamsmith_prompt"] == ""
    assert obj["props"]["dreamsmith_elevation"] == 15.0 and obj["props"]["dreamsmith_fov"] == 40.0
    assert obj["props"]["dreamsmith_seed"] == 3 and obj["props"]["dreamsmith_coarse_model"] == "toy"
    assert obj["props"]["dreamsmith_caption"] == "a yellow disc"
    assert rep["file_message"].startswith("Added 'disc'. Read the picture as 'a yellow disc'. Matches the picture's "
                                          "outline: IoU 0.83"), rep["file_message"]

    # 2. a packed image: written as a PNG into the job's folder, the same pixels (alpha kept), data-block untouched
    job = jobs[1]
    assert rep["packed"] == done and rep["packed_same"]
    assert os.path.dirname(job["image"]) == os.path.dirname(job["out"])
    assert os.path.basename(job["image"]) in job["job_folder_files"] and job["image"].endswith(".png")
    assert (job["prompt"], job["elevation"], job["fov"]) == ("a red ball", -10.0, 0.0)
    written = Image.open(record / "01-picture")
    assert written.format == "PNG" and written.mode == "RGBA" and np.array_equal(np.asarray(written), DISC)
    assert rep["packed_obj"]["props"]["dreamsmith_image"] == os.path.basename(job["image"])
    assert "dreamsmith_caption" not in rep["packed_obj"]["props"]  # words were given: none was sought

    # 3. a generated (painted) image: a PNG in the job folder, without alpha (all opaque), right way up
    job = jobs[2]
    assert rep["painted"] == done and rep["painted_same"] and rep["no_stray_images"] == []
    assert os.path.dirname(job["image"]) == os.path.dirname(job["out"]) and job["prompt"] == ""
    written = Image.open(record / "02-picture")
    assert written.format == "PNG" and written.mode == "RGB"
    assert np.array_equal(np.asarray(written), PAINTED[..., :3])
    assert "/" not in os.path.basename(job["image"])[:-4]  # the data-block's name made a file name
    assert rep["painted_obj"]["props"]["dreamsmith_image"] == os.path.basename(job["image"])

    # 4. an image data-block with its file on disk (a relative path): that file, nothing written
    assert rep["relative"] and rep["on_disk"] == done and jobs[3]["image"] == str(png)
    assert not any(f.endswith(".png") for f in jobs[3]["job_folder_files"])

    # 5. a text job sends no picture and no camera, and its result has no picture properties
    assert rep["text"] == done and (jobs[4]["image"], jobs[4]["elevation"], jobs[4]["fov"]) == ("", None, None)
    assert not any(k in rep["text_obj"]["props"] for k in ("dreamsmith_image", "dreamsmith_elevation"))
    assert rep["job_dirs"] == []


ENGINE = COMMON + r"""
addon_utils.enable("dreamsmith", default_set=True)
bpy.context.preferences.addons["dreamsmith"].preferences.device = "cpu"
before = counts()
REPORT["result"] = generate(image_path=ARGS["png"], elevation=10.0, model=ARGS["model"],
                            config_json=json.dumps(ARGS["tiny"]))
REPORT["delta"] = [a - b for a, b in zip(counts(), before)]
obj = bpy.data.objects.get("disc")
REPORT["props"] = {k: obj[k] for k in obj.keys() if k.startswith("dreamsmith_")} if obj else None
REPORT["faces"] = len(obj.data.polygons) if obj else 0
REPORT["message"] = bpy.context.window_manager.dreamsmith_job.message
REPORT["job_dirs"] = job_dirs()
print("REPORT " + json.dumps(REPORT))
"""


def test_image_to_3d_with_the_real_engine(tmp_path):
    png = tmp_path / "disc.png"
    Image.fromarray(DISC).save(png)
    # a few steps of each part; the prior's caption used whatever its margin (so that its path is run here)
    tiny = dict(TINY, image={"condition": "caption", "caption": {"batch": 4, "min_margin": 0.0}, "score_size": 32})
    rep = _run(ENGINE, {"png": str(png), "model": str(REPO / "assets" / "demo_prior"), "tiny": tiny}, timeout=600)
    assert rep["result"] == "{'FINISHED'}", rep["result"]
    assert rep["delta"] == [1, 1, 1, 1] and rep["faces"] > 0
    props = rep["props"]
    assert props["dreamsmith_image"] == "disc.png" and props["dreamsmith_prompt"] == ""
    assert props["dreamsmith_elevation"] == 10.0 and props["dreamsmith_fov"] == 0.0
    # the toy prior read the yellow disc in its own words: one of its colours and shapes
    assert re.fullmatch(r"a (red|green|blue|yellow) (cube|sphere|cone|torus)", props["dreamsmith_caption"]), props
    assert rep["message"].startswith(f"Added 'disc'. Read the picture as {props['dreamsmith_caption']!r}. Matches "
                                     "the picture's outline: IoU "), rep["message"]
    assert rep["job_dirs"] == []
