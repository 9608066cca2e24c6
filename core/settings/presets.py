"""Quality presets: overrides merged over the config defaults. The one place presets live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ...protocol import DEFAULT_MODELS
from ..runtime.errors import ConfigError
from .config import from_dict, merge

T = TypeVar("T")

# draft: CPU-capable (small grids and renders, few steps); standard: one consumer GPU; high: more of everything.
RECONSTRUCT_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {
        "coarse": {
            "steps": 700,
            "field": {"grid": {"n_levels": 8, "log2_hashmap_size": 15, "base_resolution": 16,
                               "finest_resolution": 256}},
            "occupancy": {"resolution": 64},
        },
        "coarse_reference": {"rays_per_step": 4096},
        "mesh": {"steps": 300, "render_size": 128, "dmtet": {"resolution": 64}},
        "mesh_reference": {"views_per_step": 2},
        "bake": {"texture_size": 512},
    },
    "fast": {
        "coarse": {"steps": 1500, "occupancy": {"resolution": 128}},
        "coarse_reference": {"rays_per_step": 8192},
        "mesh": {"steps": 500, "render_size": 512, "dmtet": {"resolution": 128}},
        "mesh_reference": {"views_per_step": 4},
        "bake": {"texture_size": 1024},
    },
    "standard": {
        "coarse": {"steps": 3000, "occupancy": {"resolution": 128}},
        "coarse_reference": {"rays_per_step": 8192},
        "mesh": {"steps": 1000, "render_size": 512, "dmtet": {"resolution": 128}},
        "mesh_reference": {"views_per_step": 4},
        "bake": {"texture_size": 1024},
    },
    "high": {
        "coarse": {"steps": 6000, "occupancy": {"resolution": 128}},
        "coarse_reference": {"rays_per_step": 16384},
        "mesh": {"steps": 3000, "render_size": 512, "dmtet": {"resolution": 192}},
        "mesh_reference": {"views_per_step": 8},
        "bake": {"texture_size": 2048},
    },
}


def preset_config(cls: type[T], table: dict[str, dict[str, Any]], name: str, extra: dict[str, Any] | None = None) -> T:
    """The config ``cls`` of preset ``name`` with ``extra`` merged on top; an unknown preset or key is a
    ConfigError."""
    if name not in table:
        raise ConfigError(f"Unknown preset {name!r}; choose one of: {', '.join(table)}.")
    return from_dict(cls, merge(table[name], extra or {}))


def config_maker(cls: type[T], table: dict[str, dict[str, Any]]) -> Callable[..., T]:
    """A job's ``<name>_config(preset, overrides=None)``: :func:`preset_config` of ``cls`` over ``table``."""

    def make(preset: str, overrides: dict[str, Any] | None = None) -> T:
        return preset_config(cls, table, preset, overrides)

    make.__doc__ = f"The {cls.__name__} of ``preset`` with ``overrides`` on top (unknown keys are errors)."
    return make


def _priors(preset: str, *keys: str) -> dict[str, Any]:
    """The default priors of ``preset`` (:data:`~dreamsmith.protocol.DEFAULT_MODELS`) under the config keys
    ``keys`` (``coarse_model``, ``fine_model``; a job with one prior takes the fine one)."""
    coarse, fine = DEFAULT_MODELS[preset]
    return {key: {"model": coarse if key == "coarse_model" else fine} for key in keys}


# Text to 3D. draft runs on a CPU (made for the demo prior: one pixel prior for both stages, 32-64 px renders);
# standard and high are Magic3D's two stages for one GPU, by default with Stable Diffusion in both (threestudio's
# SD-only recipe: 64 px coarse renders upsampled into the VAE, guidance 100; with IF as the coarse prior, 20 suits).
# The light the toy prior was trained with (eval/toy_prior_data.py LIGHT): (0, 0) is a headlight; an
# offset fixes a directional light to the camera. The draft presets render their lit SDS views with it.
TOY_PRIOR_LIGHT = (0.0, 0.0)
# The draft's renders: lambertian under that light, on white (what the toy prior saw), in both stages.
_SHADING_DRAFT = {"mode": "lambertian", "light": {"offset": TOY_PRIOR_LIGHT}, "background": "white"}
# The GPU presets follow threestudio's magic3d-coarse-sd and magic3d-refine-sd; docs/recipe.md has every setting
# beside threestudio's value and the reason for each difference.
_VIEWS_GPU = {"distance_min": 1.5, "distance_max": 2.0, "fov_min": 40.0, "fov_max": 70.0, "elevation_min": -10.0,
              "elevation_max": 45.0, "elevation_sphere_fraction": 0.5, "camera_perturb": 0.1, "center_perturb": 0.2,
              "up_perturb": 0.02, "views_per_step": 1}
_LIGHT_GPU = {"sample": "magic3d", "soft": True}
_SHADING_GPU = {"mode": "mixed", "lambertian_prob": 0.375, "textureless_prob": 0.375, "light": _LIGHT_GPU}
_MAGIC3D: dict[str, Any] = {
    "coarse": {"steps": 10000, "lr": {"grid": 1e-2, "mlp": 1e-2, "background": 1e-3}, "occupancy": {"resolution": 128},
               "volume": {"n_samples_per_ray": 256}},
    "coarse_sds": {"render_size": 64, "shading": {**_SHADING_GPU, "warmup": 2001, "background": "learned"},
                   "sparsity_weight": 1.0,
                   "sparsity_form": "sqrt", "orientation": (10.0, 1000.0, 5000), "views": _VIEWS_GPU},
    "coarse_guidance": {"guidance_scale": 100.0, "weighting": "uniform", "min_step_percent": 0.02,
                        "max_step_percent": 0.98, "max_step_percent_end": 0.98, "anneal": "none",
                        "vae_grad_checkpointing": True},
    "mesh": {"steps": 5000, "render_size": 512, "box": "object", "start": "density", "normal_weight": 10000.0,
             "laplacian_weight": 0.0, "sdf_weight": 0.0, "dmtet": {"resolution": 128}},
    "mesh_sds": {"shading": _SHADING_GPU, "views": {**_VIEWS_GPU, "fov_min": 30.0, "fov_max": 45.0}},
    "fine_guidance": {"guidance_scale": 100.0, "weighting": "sds", "min_step_percent": 0.02, "max_step_percent": 0.5,
                      "max_step_percent_end": 0.5, "vae_grad_checkpointing": True},
}
# The draft blob is weak (raw density +2 at the centre, 0 halfway to the box face): the blob is a bias that stays
# in the field all along, and a strong one holds every shape near a sphere.
GENERATE_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {
        **_priors("draft", "coarse_model", "fine_model"),
        "coarse": {
            "steps": 400, "lr": {"grid": 1e-2, "mlp": 1e-3},
            "field": {"grid": {"n_levels": 6, "log2_hashmap_size": 14, "base_resolution": 8,
                               "finest_resolution": 96}, "blob_density": 2.0, "blob_radius": 0.5},
            "occupancy": {"resolution": 32},
            # normal_min_weight 0.01: samples under 1 % of their pixel are shaded without normals (a coarse step
            # 1.3-1.5x faster, no pixel moved by more than 0.03: README, "Image to 3D, measured"; the text sweep
            # with it: README, "Status").
            "volume": {"n_samples_per_ray": 64, "normal_min_weight": 0.01},
        },
        "coarse_sds": {"render_size": 32, "sparsity_weight": 0.1, "shading": _SHADING_DRAFT,
                       "views": {"views_per_step": 4}},
        "coarse_guidance": {"guidance_scale": 20.0, "max_step_percent": 0.98, "max_step_percent_end": 0.5,
                            "anneal": "linear"},
        # normal_weight 100 (the default's 0.05 let score distillation crumple a cube's faces and edges; on the
        # text sweep's coarse stages every result came out nearer its primitive by the surface, and every edit of
        # the edit sweep nearer its target: docs/experiments.md).
        "mesh": {"steps": 120, "render_size": 64, "lr": {"sdf": 0.05, "deform": 0.005, "color": 5e-3},
                 "iso_density": 10.0, "normal_weight": 100.0, "dmtet": {"resolution": 32}},
        "mesh_sds": {"shading": _SHADING_DRAFT, "views": {"views_per_step": 4}},
        "fine_guidance": {"guidance_scale": 20.0, "max_step_percent": 0.5, "max_step_percent_end": 0.5},
        "bake": {"texture_size": 256},
        # From a picture with no prompt, the unseen sides are guided by the caption the prior reads from high noise
        # only (0.6-0.98: there the words carry the shape, docs/image-to-3d.md); a reading won by under half its
        # error is set aside for the learned condition. The mesh stage is the text's (its normal weight 100 was
        # the picture's own before text took it too).
        "image": {"condition": "caption",
                  "caption": {"min_step_percent": 0.6, "max_step_percent": 0.98, "min_margin": 0.5}},
    },
    # fast: a fifth of the steps, each stage's timestep falling from its largest to its smallest over the run
    # (DreamTime's and DreamGaussian's monotone schedules); the shading warm-up and the orientation ramp keep their
    # share of the run.
    "fast": merge(_MAGIC3D, {**_priors("fast", "coarse_model", "fine_model"),
                             "coarse": {"steps": 2000},
                             "coarse_sds": {"shading": {"warmup": 400}, "orientation": (10.0, 1000.0, 1000)},
                             "coarse_guidance": {"schedule": "decreasing"},
                             "mesh": {"steps": 1000}, "fine_guidance": {"schedule": "decreasing"},
                             "bake": {"texture_size": 1024}}),
    "standard": merge(_MAGIC3D, {**_priors("standard", "coarse_model", "fine_model"), "bake": {"texture_size": 1024}}),
    # high: the same recipe with twice the samples per ray, a finer tet grid and texture.
    "high": merge(_MAGIC3D, {**_priors("high", "coarse_model", "fine_model"),
                             "coarse": {"volume": {"n_samples_per_ray": 512}},
                             "mesh": {"dmtet": {"resolution": 192}}, "bake": {"texture_size": 2048}}),
}

# Image to 3D: a generate with a picture takes its preset with these on top (and the user's overrides over both).
# One object is in the picture: pieces under 0.3 of the largest go (the prior likes to add a ground or shadow below
# it, out of the picture's sight; text keeps the mesh stage's 0.05). The draft's mesh stage scores the other views
# at guidance 5 instead of the text's 20: the picture holds the shape, and the toy prior's stronger score dented a
# cube's faces (on the image sweep's coarse stages: cubes by their box 1/4 -> 3/4, every shape, colour and IoU as
# before or better within 0.003; docs/experiments.md). Its normal consistency weighs the angle between faces, not
# 1 - cos: wrinkles flattened as hard, a crease not rounded (the last cube a cube by its box, 4.01 / 3.33 -> 3.11 /
# 3.78 from the cube / sphere; IoU mean 0.969 -> 0.971; docs/experiments.md).
PICTURE_OVERRIDES: dict[str, dict[str, Any]] = {
    name: merge({"mesh": {"min_component_fraction": 0.3}},
                {"fine_guidance": {"guidance_scale": 5.0}, "mesh": {"normal_form": "angle"}} if name == "draft"
                else {})
    for name in GENERATE_PRESETS
}

# Re-texture (geometry fixed) and edit (geometry and texture from an existing mesh). draft: a pixel prior at
# 32-64 px on a CPU; standard/high: a latent prior (Stable Diffusion) at 512 px on one GPU.
_RETEX_DRAFT: dict[str, Any] = {
    "color_field": {"grid": {"n_levels": 6, "log2_hashmap_size": 14, "base_resolution": 8, "finest_resolution": 128}},
    "fine_guidance": {"guidance_scale": 20.0, "max_step_percent": 0.8, "max_step_percent_end": 0.3,
                      "anneal": "linear"},
    "mesh": {"steps": 150, "render_size": 64, "lr": {"color": 1e-2}, "preview_every": 25},
    "mesh_sds": {"shading": _SHADING_DRAFT, "views": {"views_per_step": 4}},
    "bake": {"texture_size": 256},
}
_RETEX_GPU: dict[str, Any] = {
    "fine_guidance": {"guidance_scale": 100.0, "max_step_percent": 0.98, "max_step_percent_end": 0.5,
                      "anneal": "linear", "vae_grad_checkpointing": True},
    "mesh": {"render_size": 512, "lr": {"color": 1e-2}, "preview_every": 100},
    # Re-texturing is not part of threestudio's Magic3D recipe: its views stay as measured before (4 a step, no
    # perturbation; docs/recipe.md).
    "mesh_sds": {"shading": {"mode": "albedo"}, "views": {"distance_min": 1.5, "distance_max": 2.0, "fov_min": 40.0,
                                                  "fov_max": 70.0}},
}
RETEXTURE_PRESETS: dict[str, dict[str, Any]] = {
    "draft": merge(_RETEX_DRAFT, _priors("draft", "fine_model")),
    "fast": merge(_RETEX_GPU, {**_priors("fast", "fine_model"), "mesh": {"steps": 400},
                               "fine_guidance": {"schedule": "decreasing"}, "bake": {"texture_size": 1024}}),
    "standard": merge(_RETEX_GPU, {**_priors("standard", "fine_model"), "mesh": {"steps": 1000},
                                   "bake": {"texture_size": 1024}}),
    "high": merge(_RETEX_GPU, {**_priors("high", "fine_model"), "mesh": {"steps": 2500},
                               "bake": {"texture_size": 2048}}),
}
# Transfers (a textured mesh baked onto another): only the texture's size differs.
TRANSFER_PRESETS: dict[str, dict[str, Any]] = {
    name: {"bake": {"texture_size": size}} for name, size in (("draft", 512), ("fast", 1024), ("standard", 1024),
                                                              ("high", 2048))
}

# Edits are generate jobs that start from the object's shape (no blob) and need fewer coarse steps to get there.
# They keep the volume's own normal threshold (0.001): the draft's 0.01 measured no faster for the edit sweep's
# four edits (428 s against 418 s in all) and no nearer their targets (README, "Status").
# The GPU presets keep threestudio's share of albedo-only steps (2001 of 10000) in their shorter coarse stage.
EDIT_PRESETS: dict[str, dict[str, Any]] = {
    name: merge(GENERATE_PRESETS[name], {"coarse": {"steps": steps, "field": {"density_bias": "none"},
                                                    "volume": {"normal_min_weight": 1e-3}},
                                         **({"coarse_sds": {"shading": {"warmup": steps // 5}}} if name != "draft"
                                            else {})})
    for name, steps in (("draft", 250), ("fast", 500), ("standard", 2500), ("high", 5000))
}
