"""Image to 3D, the Blender side: which picture a Generate starts from and the file the engine reads.

The picture is the operator's ``image_path`` when a script gives one; otherwise, with the sidebar on "From image",
the image data-block picked there (else its file path). A data-block whose PNG or JPEG is on disk, unchanged, is
used by its absolute path; any other (packed, generated, painted, another format) is written as a PNG into the job's
own folder when the job starts, with an alpha channel only when some pixel is transparent (the engine takes a PNG's
alpha as the object's mask, and finds the object on a plain background otherwise). The user's data-block is never
changed. What the engine accepts (a readable PNG or JPEG with an object in it) is the engine's to check.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path

import bpy

#: Files the engine reads as they are (by extension: a data-block need not be loaded to tell).
DISK_FORMATS = (".png", ".jpg", ".jpeg")
#: The field of view the add-on offers besides 0 (the prior's own), degrees.
FOV_RANGE = (10.0, 120.0)
#: The highest (and, negated, lowest) elevation offered, degrees (straight above or below, a camera has no "up").
ELEVATION_MAX = 89.0


def _file(path: str) -> str:
    """The absolute path of a picture file that exists (ValueError otherwise)."""
    full = os.path.abspath(bpy.path.abspath(path))
    if not os.path.isfile(full):
        raise ValueError(f"The picture {path!r} was not found; choose a PNG or JPEG file that exists.")
    return full


def _block(image) -> dict[str, str]:
    """The inputs for an image data-block: its file, or its name to write out when the job starts."""
    if image.source not in ("FILE", "GENERATED"):
        raise ValueError(f"The image {image.name!r} is not a still picture ({image.source.lower()}); save it as a "
                         "PNG first and pick that.")
    if image.source == "FILE" and image.packed_file is None:
        path = os.path.abspath(bpy.path.abspath(image.filepath, library=image.library))
        if not os.path.isfile(path):
            raise ValueError(f"The file of the image {image.name!r} was not found ({path}); reload or pack it.")
        if not image.is_dirty and os.path.splitext(path)[1].lower() in DISK_FORMATS:
            return {"image": path, "image_block": ""}
    if not image.size[0] or not image.size[1]:
        raise ValueError(f"The image {image.name!r} has no pixels; pick another picture.")
    return {"image": "", "image_block": image.name}


def picture_inputs(image_path: str, props, elevation: float, fov: float) -> dict:
    """A Generate's picture inputs: ``{}`` for a text job, else ``image`` (a file) or ``image_block`` (a data-block
    to write out with :func:`write_picture`), ``elevation`` and ``fov``.

    Args:
        image_path: The operator's picture file ("": the sidebar decides).
        props: The sidebar's inputs (``scene.dreamsmith``): ``source``, ``image``, ``image_path``.
        elevation: The picture's camera elevation, degrees.
        fov: Its vertical field of view, degrees (0: the prior's own).

    Raises:
        ValueError: No picture, a missing file, or a field of view out of range; the message says what to do.
    """
    if image_path:
        inputs = {"image": _file(image_path), "image_block": ""}
    elif props.source != "IMAGE":
        return {}
    elif props.image is not None:
        inputs = _block(props.image)
    elif props.image_path:
        inputs = {"image": _file(props.image_path), "image_block": ""}
    else:
        raise ValueError("No picture: pick an image in the sidebar's Picture panel or a PNG or JPEG file, or set "
                         "Source to Text.")
    if fov and not FOV_RANGE[0] <= fov <= FOV_RANGE[1]:
        raise ValueError(f"The field of view must be between {FOV_RANGE[0]:g} and {FOV_RANGE[1]:g} degrees, or 0 "
                         f"for the model's own (got {fov:g}).")
    return dict(inputs, elevation=float(elevation), fov=float(fov))


def _rgba(pixels: array, channels: int) -> array:
    """``pixels`` with 1 or 3 channels a pixel as RGBA (opaque)."""
    out = array("f", [1.0]) * (len(pixels) // channels * 4)
    for k in range(3):
        out[k::4] = pixels[min(k, channels - 1)::channels]
    return out


def write_picture(name: str, folder: Path) -> str:
    """Write the image data-block ``name`` as a PNG into ``folder`` (named after it) and return its path; the
    data-block is only read. An image without transparent pixels is written without alpha.

    Raises:
        ValueError: The data-block is gone or has no pixels.
        OSError: The PNG could not be written.
    """
    src = bpy.data.images.get(name)
    if src is None or not src.size[0] or not src.size[1]:
        raise ValueError(f"The image {name!r} is no longer in the file or has no pixels; pick another picture.")
    width, height = src.size
    pixels = array("f", [0.0]) * len(src.pixels)
    src.pixels.foreach_get(pixels)
    if src.channels != 4:
        pixels = _rgba(pixels, src.channels)
    alpha = src.depth in (32, 128) and min(pixels[3::4], default=1.0) < 1.0
    stem, ext = os.path.splitext(name)  # "photo.jpg" (a loaded file's name) -> "photo.png"
    path = folder / f"{bpy.path.clean_name(stem if ext.lower() in bpy.path.extensions_image else name)}.png"
    out = bpy.data.images.new("Dreamsmith picture", width, height, alpha=alpha, float_buffer=src.is_float)
    try:
        out.colorspace_settings.name = src.colorspace_settings.name
        out.pixels.foreach_set(pixels)
        out.filepath_raw, out.file_format = str(path), "PNG"
        out.save()
    except RuntimeError as exc:
        raise OSError(f"Cannot write the picture {name!r} to {path} ({exc}).") from exc
    finally:
        bpy.data.images.remove(out)
    return str(path)


def job_picture(values: dict, folder: Path) -> dict:
    """``values`` with ``image`` set to the file the engine reads (a data-block written into ``folder``)."""
    if values.get("image_block"):
        return dict(values, image=write_picture(values["image_block"], folder))
    return values


def picture_name(values: dict) -> str:
    """The picture's file name ("" for a text job)."""
    return os.path.basename(values.get("image") or "")


def result_name(values: dict) -> str:
    """The new object's name: the prompt's start, else the picture's (its data-block's, or its file's) name."""
    return values["prompt"][:60] or values.get("image_block") or os.path.splitext(picture_name(values))[0]


def picture_props(values: dict, summary: dict) -> dict:
    """The custom properties an image to 3D result gets besides the prompt's (``{}`` for a text job)."""
    if not values.get("image"):
        return {}
    props = {"image": summary.get("image") or picture_name(values), "elevation": float(values.get("elevation", 0.0)),
             "fov": float(values.get("fov", 0.0))}
    if summary.get("caption"):  # no prompt was given: the words the prior read the picture as
        props["caption"] = str(summary["caption"])
    return props


def reference_text(summary: dict) -> str:
    """How well the result matches the picture, from the engine's summary ("" when it says nothing)."""
    iou = (summary.get("reference") or {}).get("iou")
    if not isinstance(iou, (int, float)):
        return ""
    read = f" Read the picture as {summary['caption']!r}." if summary.get("caption") else ""
    unsure = summary.get("caption_set_aside") or {}
    if not read and unsure.get("caption"):
        read = f" Not sure the picture is {unsure['caption']!r}: learned its look instead."
    return f"{read} Matches the picture's outline: IoU {iou:.2f} (1 is a perfect match)."
