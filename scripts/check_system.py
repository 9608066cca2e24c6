"""What `make demo` and `make test` need from the system, said once and plainly before anything runs: Python 3.11,
and the X11/GL client libraries that Blender's `bpy` module loads even headless.

    python scripts/check_system.py [--bpy]

Exit 1 with a message that names what to install; 0 when all is there.
"""

from __future__ import annotations

import re
import subprocess
import sys

#: The shared libraries bpy 5.0 loads, and the Debian/Ubuntu packages that carry them.
BPY_LIBRARIES = {"libX11.so.6": "libx11-6", "libXrender.so.1": "libxrender1", "libXi.so.6": "libxi6",
                 "libxkbcommon.so.0": "libxkbcommon0", "libSM.so.6": "libsm6", "libICE.so.6": "libice6",
                 "libGL.so.1": "libgl1", "libXext.so.6": "libxext6", "libXfixes.so.3": "libxfixes3",
                 "libXxf86vm.so.1": "libxxf86vm1"}


def python_problem() -> str:
    """Why this Python cannot run the project ("" when it can)."""
    if sys.version_info[:2] != (3, 11):
        return (f"Dreamsmith needs Python 3.11 (bpy 5.0 exists for 3.11 only); this is {sys.version.split()[0]}. "
                "Run make with PYTHON=python3.11 (Debian/Ubuntu: apt install python3.11 python3.11-venv).")
    return ""


def bpy_problem(python: str) -> str:
    """Why ``python`` cannot import bpy ("" when it can), naming the packages that carry the missing libraries."""
    proc = subprocess.run([python, "-c", "import bpy"], capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return ""
    missing = sorted(set(re.findall(r"(lib[\w.+-]+\.so[.\d]*): cannot open shared object file", proc.stderr)))
    if not missing:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"bpy (Blender as a Python module) does not import: {last}"
    packages = sorted({BPY_LIBRARIES.get(lib, lib) for lib in missing})
    return (f"bpy (Blender as a Python module) needs the system libraries {', '.join(missing)}. Install them "
            f"(Debian/Ubuntu: apt install {' '.join(packages)} libx11-6 libxrender1 libxi6 libxkbcommon0 libsm6 "
            "libgl1) and run make again.")


def main() -> int:
    problem = python_problem() or (bpy_problem(sys.executable) if "--bpy" in sys.argv else "")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
