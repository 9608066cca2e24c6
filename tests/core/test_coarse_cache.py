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


def test_an_edit_is_keyed_by_its_starting_shape(tmp_path):
    from dreamsmith.core.jobs.edit import edit_config, run_edit
    from dreamsmith.core.meshio import write_glb
    from dreamsmith.eval.shapes import source_mesh

    torch.set_grad_enabled(True)
    small = {"seed": 1, "coarse_model": {"model": str(TOY)}, "coarse": {"steps": 8}, "mesh": {"steps": 2},
             "prior_resolution": 24}
    results = []
    with coarse_cache(tmp_path / "cache") as cache:
        cache.label = "one label for every edit"
        for i, shape in enumerate(["cube", "cube", "sphere"]):
            src = write_glb(source_mesh(shape), tmp_path / f"{i}_{shape}.glb")
            run_edit(src, "a blue cone", tmp_path / f"{i}.glb", edit_config("draft", small), device="cpu",
                     preset="draft")
            results.append(read_mesh(tmp_path / f"{i}.glb")[0])
        assert (cache.trained, cache.loaded) == (2, 1)  # the sphere's starting shape is another key
    assert results[0].shape == results[1].shape and (results[0] == results[1]).all()
