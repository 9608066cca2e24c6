"""What the tests and the scripts share to judge results: analytic test objects and their datasets
(:mod:`.synth_objects`), the toy prior's shapes and renders (:mod:`.toy_prior_data`), priors with the real models'
structure and random weights (:mod:`.random_priors`), the shape judge (:mod:`.shapes`), the image sweep's pictures
(:mod:`.pictures`), the package's import graph (:mod:`.import_graph`) and a sweep's ``--config``
(:func:`config_overrides`). No bpy; not shipped in the Blender extension."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def config_overrides(arg: str | None) -> dict[str, Any]:
    """A sweep's ``--config``: JSON text (``'{"mesh": {"steps": 60}}'``) or the path of a JSON file; None: none."""
    if not arg:
        return {}
    return json.loads(arg if arg.lstrip().startswith("{") else Path(arg).read_text())

