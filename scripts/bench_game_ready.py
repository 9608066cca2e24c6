"""Face budgets and normal maps, measured: for each mesh and budget, the decimated mesh's triangle count, its
Chamfer distance to the full surface, and how close its lit renders come to the full mesh's with and without the
baked normal map (same views, same light); decimation and bake times.

    python scripts/bench_game_ready.py [--budgets 1000 5000 20000] [--toy [--keep DIR]] [MESH ...]

``--toy`` first makes the toy prior's four shapes with the draft preset (``generate``, seed 0: a red cube, a green
sphere, a blue cone, a yellow torus; a few minutes each on a CPU); with no MESH, the committed real asset
(``tests/assets/cesium_milk_truck``, CC BY 4.0, Cesium) is measured. The colour of each decimated mesh is
transferred from the full mesh's texture (:mod:`dreamsmith.core.jobs.transfer`), its normal map baked from the full
surface (:mod:`dreamsmith.core.finish.normal_map`).

Render error: eight views around the object at 25 degrees elevation, a directional light from the upper left,
textureless (the light term alone, so that only the shading differs); the mean absolute difference of the lit grey
over the pixels both renders cover, in percent of full scale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dreamsmith.core.finish.bake import BakeConfig, unwrap
from dreamsmith.core.finish.decimate import decimate
from dreamsmith.core.finish.normal_map import decode_normal_map
from dreamsmith.core.geometry.metrics import chamfer_meshes
from dreamsmith.core.jobs.transfer import transfer_maps
from dreamsmith.core.meshio import read_mesh, vertex_normals
from dreamsmith.core.scene.cameras import camera_light, orbit_cameras
from dreamsmith.kernels.raster import interpolate, rasterize

REPO = Path(__file__).resolve().parents[1]
TRUCK = REPO / "tests" / "assets" / "cesium_milk_truck" / "CesiumMilkTruck.gltf"
TOY_PROMPTS = ("a red cube", "a green sphere", "a blue cone", "a yellow torus")


def cameras(verts: np.ndarray, size: int = 256):
    """Eight views around the mesh's bounding box (scaled so the object fills about 70 % of the frame)."""
    lo, hi = verts.min(0), verts.max(0)
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
    az = torch.arange(8, dtype=torch.float32) * 45.0
    return orbit_cameras(az, torch.full((8,), 25.0), 2.6 * radius, 45.0, size, target=tuple(centre.tolist()))


def lit(verts, faces, normals, cams, normal_map=None, uvs=None, tangents=None) -> tuple[np.ndarray, np.ndarray]:
    """The light term ``0.2 + 0.8 max(0, n . l)`` of each pixel ``[B, H, W]`` and the coverage mask, with per-pixel
    normals from ``normal_map`` when given (decoded in the frames of ``normals`` and ``tangents``)."""
    v, f = torch.from_numpy(np.asarray(verts, np.float32)), torch.from_numpy(np.asarray(faces, np.int64))
    attrs = [np.asarray(normals, np.float32)]
    if normal_map is not None:
        attrs += [np.asarray(tangents, np.float32), np.asarray(uvs, np.float32)]
    with torch.no_grad():
        rast = rasterize(cams.project(v), f.to(torch.int32), (cams.height, cams.width))
        mask = (rast[..., 3] > 0).numpy()
        at = interpolate(torch.from_numpy(np.concatenate(attrs, 1)), rast, f.to(torch.int32)).numpy()[mask]
    n = at[:, :3]
    if normal_map is not None:
        from dreamsmith.core.finish.bake import sample_texture

        n = decode_normal_map(sample_texture(normal_map, at[:, 7:9]), n, at[:, 3:7])
    n = n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-9)
    light = camera_light(cams, (-0.5, 0.6)).numpy()
    per_pixel = np.broadcast_to(light[:, None, None, :], mask.shape + (3,))[mask]
    out = np.zeros(mask.shape, np.float32)
    out[mask] = 0.2 + 0.8 * np.clip((n * per_pixel).sum(1), 0, None)
    return out, mask


def measure(name: str, path: Path, budgets: list[int], size: int) -> list[str]:
    verts, faces, uvs, texture = read_mesh(path)
    normals = vertex_normals(verts, faces)
    cams = cameras(verts)
    full_img, full_mask = lit(verts, faces, normals, cams)
    rows = []
    for budget in budgets:
        t0 = time.perf_counter()
        lv, lf = decimate(verts, faces, budget)
        t_dec = time.perf_counter() - t0
        t0 = time.perf_counter()
        cfg = BakeConfig(texture_size=size)
        lv, lf, luv, _ = unwrap(lv, lf, cfg)
        low = transfer_maps((verts, faces, uvs, texture), lv, lf, luv, cfg, name)
        t_bake = time.perf_counter() - t0
        chamfer = chamfer_meshes((lv, lf), (verts, faces), n=50_000)["symmetric"] * 100
        errors = []
        for mapped in (False, True):
            img, mask = lit(low.verts, low.faces, low.normals, cams, low.normal_map if mapped else None, low.uvs,
                            low.tangents)
            both = mask & full_mask
            errors.append(float(np.abs(img - full_img)[both].mean()) * 100)
        closer = (1 - errors[1] / errors[0]) * 100 if errors[0] > 0 else 0.0
        rows.append(f"| {name} | {len(faces):,} | {budget:,} | {len(lf):,} | {chamfer:.3f} | {errors[0]:.2f} | "
                    f"{errors[1]:.2f} | {closer:.0f} % | {t_dec:.2f} | {t_bake:.1f} |")
        print(rows[-1], flush=True)
    return rows


def toy_shapes(folder: Path) -> list[tuple[str, Path]]:
    """The toy prior's four shapes, made by ``generate`` at the draft preset (seed 0)."""
    from dreamsmith.core.app.cli import main

    made = []
    for prompt in TOY_PROMPTS:
        out = folder / f"{prompt.replace(' ', '_')}.glb"
        assert main(["generate", "--prompt", prompt, "--seed", "0", "--device", "cpu", "--out", str(out),
                     "--preview", str(out.with_suffix(".png")), "--quiet"]) == 0
        made.append((prompt, out))
    return made


def contact_sheet(previews: list[Path], out: Path, tile: int = 256) -> None:
    """The first view of each preview (a row of square shaded views) side by side, ``tile`` pixels each."""
    from PIL import Image

    tiles = []
    for path in previews:
        with Image.open(path) as img:
            side = img.height
            tiles.append(img.convert("RGB").crop((0, 0, side, side)).resize((tile, tile), Image.LANCZOS))
    sheet = Image.new("RGB", (tile * len(tiles), tile), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, (i * tile, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("meshes", nargs="*", help="textured meshes (.glb, .gltf, .obj); default: the real asset")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--toy", action="store_true", help="also make and measure the toy prior's four shapes")
    parser.add_argument("--texture", type=int, default=1024, help="texture and normal-map size")
    parser.add_argument("--keep", type=Path, help="keep the toy shapes (GLB, .json, preview PNG) in this folder")
    parser.add_argument("--sheet", type=Path, help="write the toy shapes' first preview views side by side here "
                                                   "(the README's picture: docs/images/toy_results.png)")
    args = parser.parse_args(argv)
    meshes = [(Path(m).stem, Path(m)) for m in args.meshes] or [("Cesium Milk Truck (CC BY 4.0)", TRUCK)]
    print("| mesh | full faces | budget | faces | Chamfer % of diagonal | lit error, no map % | with normal map % | "
          "closer | decimate s | unwrap + bake s |\n|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        if args.toy:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            toys = toy_shapes(folder)
            if args.sheet:
                contact_sheet([path.with_suffix(".png") for _, path in toys], args.sheet)
            meshes = toys + meshes
        for name, path in meshes:
            measure(name, path, args.budgets, args.texture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
