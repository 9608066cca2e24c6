"""Put an engine GLB into a new .blend (textured object, packed image).

    python scripts/glb_to_blend.py IN.glb OUT.blend

Runs Blender as a Python module (bpy) in this process; the scene work is the add-on's own import code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import bpy

    from dreamsmith.addon.scene_io import import_result

    glb, blend = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = import_result(glb, props={"source": str(glb)})
    blend.parent.mkdir(parents=True, exist_ok=True)
    tmp = blend.with_name(f".{blend.stem}.tmp.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp), compress=True)
    os.replace(tmp, blend)
    print(f"wrote {blend} with object {obj.name!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
