"""The sweeps' coarse-stage cache gives the mesh stage the same start as training does (eval/coarse_cache.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from dreamsmith.core.jobs.generate import generate_config, run_generate
from dreamsmith.core.meshio import read_mesh
from dreamsmith.eval.coarse_cache import coarse_cache

TOY = Path(__file__).resolve().parents[2] / "assets" / "demo_prior"
SMALL = {"seed": 3, "coarse_model": {"model": str(TOY)},
         "coarse": {"steps": 12, "field": {"blob_density": 5.0, "blob_radius": 0.4}}, "mesh": {"steps": 3}}


def test_a_cached_coarse_stage_gives_the_same_result(tmp_path):
    torch.set_grad_enabled(True)
    results = []
    with coarse_cache(tmp_path / "cache") as cache:
        for i, label in enumerate(["a red cube", "a red cube", "a blue cone"]):
            cache.label = label
            out = tmp_path / f"{i}.glb"
            run_generate(label, out, generate_config("draft", SMALL), device="cpu", preset="draft")
            results.append(read_mesh(out))
        assert (cache.trained, cache.loaded) == (2, 1)  # the second red cube loads the first's coarse stage
    (v0, f0, *_), (v1, f1, *_), (v2, _, *_) = results
    assert v0.shape == v1.shape and (v0 == v1).all() and (f0 == f1).all()
    assert v0.shape != v2.shape or not (v0 == v2).all()  # another prompt is another key
