"""The GPU presets' recipe (threestudio's Magic3D): the pieces it needs beyond the draft's, each doing what the
recipe table (docs/recipe.md) says: Magic3D's light sampling and soft shading, camera perturbations and elevations
uniform on the sphere, the orientation penalty's ramp, the mesh stage's shading mix, the tight tet grid with a
continuous start, a decreasing timestep schedule, and the presets wiring them up. The draft draws no extra random
numbers for any of them (its results are the golden test's)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from dreamsmith.core.render.shading import LightConfig, ShadingConfig, sample_lights, shade
from dreamsmith.core.scene.cameras import ViewSamplerConfig, sample_views
from dreamsmith.core.stages.coarse import CoarseSDSConfig
from dreamsmith.core.stages.mesh import MeshSDSConfig, MeshStageConfig
from dreamsmith.core.stages.objectives import view_lights


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_magic3d_lights_lie_within_60_degrees_of_the_camera_and_soft_light_draws_the_ambient_share():
    cams, _, _ = sample_views(ViewSamplerConfig(views_per_step=256), 8, _gen())
    dirs, ambient = sample_lights(LightConfig(sample="magic3d", soft=True), cams.centers, _gen(1))
    to_cam = torch.nn.functional.normalize(cams.centers, dim=-1)
    angle = torch.rad2deg(torch.acos((dirs * to_cam).sum(-1).clamp(-1, 1)))
    assert float(angle.max()) <= 60.0 + 1e-3 and float(angle.max()) > 45.0 and float(angle.min()) < 15.0
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(256), atol=1e-5)
    assert float(ambient.min()) >= 0.0 and float(ambient.max()) <= 1.0 and float(ambient.std()) > 0.2
    lit = shade(torch.ones(2, 3), torch.tensor([[0.0, 0, 1], [0, 0, 1]]), torch.tensor([[0.0, 0, 1], [1, 0, 0]]),
                "lambertian", LightConfig(), ambient=torch.tensor([[0.25], [0.25]]))
    assert torch.allclose(lit[:, 0], torch.tensor([1.0, 0.25]))  # a + (1 - a) max(0, n . l)


def test_a_fixed_light_draws_nothing_so_the_draft_is_unchanged():
    cams, _, _ = sample_views(ViewSamplerConfig(), 8, _gen())
    gen = _gen(3)
    assert view_lights(LightConfig(), "lambertian", cams, gen) == (None, None)
    assert view_lights(LightConfig(sample="magic3d"), "albedo", cams, gen) == (None, None)
    assert torch.equal(gen.get_state(), _gen(3).get_state())


def test_camera_perturbations_and_elevations_uniform_on_the_sphere():
    plain = ViewSamplerConfig(views_per_step=512, elevation_min=-10.0, elevation_max=45.0)
    cams, _, el = sample_views(plain, 8, _gen())
    again, _, _ = sample_views(ViewSamplerConfig(**{**plain.__dict__, "camera_perturb": 0.0}), 8, _gen())
    assert torch.equal(cams.c2w, again.c2w)  # no perturbation: the same cameras, the same draws
    sphere, _, el_s = sample_views(ViewSamplerConfig(**{**plain.__dict__, "elevation_sphere_fraction": 1.0}), 8,
                                   _gen())
    assert float(el_s.min()) >= -10.0 - 1e-4 and float(el_s.max()) <= 45.0 + 1e-4
    assert float(el_s.mean()) < float(el.mean()) - 1.0  # uniform in sin(el): fewer views from high up
    moved, _, _ = sample_views(ViewSamplerConfig(**{**plain.__dict__, "camera_perturb": 0.1, "center_perturb": 0.2,
                                                    "up_perturb": 0.02}), 8, _gen())
    shift = (moved.centers - cams.centers).abs()
    assert float(shift.max()) <= 0.1 + 1e-5 and float(shift.mean()) > 0.02
    forward = -moved.c2w[:, :3, 2]  # where each camera looks: no longer exactly at the centre
    miss = torch.linalg.cross(forward, -moved.centers, dim=-1).norm(dim=-1) / moved.centers.norm(dim=-1)
    assert 0.02 < float(miss.mean()) < 0.3


def test_the_orientation_weight_ramps_as_threestudio_configures_it():
    cfg = CoarseSDSConfig(orientation=(10.0, 1000.0, 5000))
    assert [cfg.orientation_weight(s) for s in (0, 2500, 5000, 9000)] == [10.0, 505.0, 1000.0, 1000.0]
    assert CoarseSDSConfig().orientation_weight(100) == 0.0


def test_the_mesh_stage_mixes_albedo_lambertian_and_textureless():
    look = MeshSDSConfig().shading
    look.mode = "mixed"
    gen = _gen()
    counts = Counter(look.pick(step, gen) for step in range(1, 4001))
    assert abs(counts["albedo"] / 4000 - 0.25) < 0.03
    assert abs(counts["lambertian"] / 4000 - 0.375) < 0.03 and abs(counts["textureless"] / 4000 - 0.375) < 0.03
    assert MeshSDSConfig().shading.pick(5, gen) == "lambertian"
    assert CoarseSDSConfig().shading.pick(5, gen) == "lambertian"  # one shading config, the same in both stages
    assert ShadingConfig(mode="mixed", warmup=10).pick(5, gen) == "albedo"  # albedo only in the warm-up


def _sphere_density(radius: float, centre=(0.2, -0.1, 0.0)):
    c = torch.tensor(centre)

    def density(x):  # a smooth solid sphere, density 100 inside, falling through the level at the radius
        return 100.0 * torch.sigmoid((radius - (x - c).norm(dim=-1)) * 40.0)
    return density, c


def test_a_tight_tet_grid_with_a_continuous_start_puts_the_surface_where_the_field_has_it():
    from dreamsmith.core.stages.surface import init_geometry

    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])
    density, c = _sphere_density(0.3)
    iso = 50.0 * float((bbox[1] - bbox[0]).norm())  # the level sits at the sphere's radius
    errors = {}
    for box, start in (("scene", "occupancy"), ("object", "occupancy"), ("object", "density")):
        cfg = MeshStageConfig(iso_density=iso, box=box, start=start)
        cfg.dmtet.resolution = 24
        geo = init_geometry(cfg, bbox, torch.device("cpu"), density, source="text")
        verts = geo()[0].detach()
        errors[(box, start)] = float(((verts - c).norm(dim=-1) - 0.3).abs().mean())
        if box == "object":
            size = geo.bbox[1] - geo.bbox[0]
            assert bool((size < 0.9).all()) and bool((size > 0.6).all())  # the sphere (0.6) plus its margin
            assert torch.allclose(geo.bbox.mean(0), c, atol=0.05)
    assert errors[("object", "occupancy")] < 0.6 * errors[("scene", "occupancy")]  # finer cells on the object
    assert errors[("object", "density")] < 0.5 * errors[("object", "occupancy")]  # between grid points
    assert errors[("object", "density")] < 0.01


def test_the_continuous_start_keeps_what_the_cleaning_decided():
    from dreamsmith.core.stages.surface import initial_sdf

    n = 25
    axis = torch.linspace(-1, 1, n)
    verts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])
    outer, c = _sphere_density(0.6, (0.0, 0.0, 0.0))
    speck, _ = _sphere_density(0.09, (0.8, 0.8, 0.8))

    def hollow_ball_and_speck(x):  # a shell with an enclosed hollow, and a speck far off
        return torch.maximum(outer(x) - _sphere_density(0.3, (0.0, 0.0, 0.0))[0](x), speck(x))

    iso = 50.0 * float((bbox[1] - bbox[0]).norm())
    sdf = initial_sdf(hollow_ball_and_speck, verts, (n, n, n), bbox, iso, source="text", start="density")
    assert float(sdf[verts.norm(dim=-1).argmin()]) < 0  # the hollow is filled
    assert bool((sdf[(verts - 0.8).norm(dim=-1) < 0.05] > 0).all())  # the speck is dropped
    assert float(sdf.abs().max()) <= 2.0 / (n - 1) + 1e-6  # within one cell


def test_the_decreasing_schedule_falls_from_the_largest_timestep_to_the_smallest():
    from dreamsmith.core.guidance.sds import SDSConfig, SDSGuidance

    class Prior:  # only what the schedule reads
        device = torch.device("cpu")
        vae = None
        camera_features = 0
        image_size = 8

    from diffusers import DDPMScheduler

    Prior.scheduler = DDPMScheduler(num_train_timesteps=1000)
    guidance = SDSGuidance(Prior(), prompts=None, cfg=SDSConfig(schedule="decreasing", max_step_percent=0.98,
                                                                 min_step_percent=0.02))
    seen = []
    guidance.predict_noise_pair = lambda x_t, t, *a: (seen.append(t.clone()), (x_t, x_t))[1]
    guidance.prompts = type("P", (), {"view_index": lambda self, a, e: torch.zeros(len(a), dtype=torch.long),
                                      "embeddings": lambda self, v: (torch.zeros(len(v), 1), torch.zeros(len(v), 1))})()
    rgb = torch.rand(2, 8, 8, 3)
    for step in (0, 250, 500, 1000):
        guidance(rgb, torch.zeros(2), torch.zeros(2), step, 1000, _gen())
    ts = [int(t[0]) for t in seen]
    assert ts == [980, 740, 500, 20] and all(bool((t == t[0]).all()) for t in seen)


def test_the_gpu_presets_follow_the_recipe_and_fast_takes_a_fifth_of_the_steps():
    from dreamsmith.core.jobs.generate import generate_config

    std, fast, draft = generate_config("standard"), generate_config("fast"), generate_config("draft")
    assert (std.coarse.steps, std.mesh.steps) == (10000, 5000)  # threestudio's max_steps
    assert std.coarse_sds.views.views_per_step == std.mesh_sds.views.views_per_step == 1  # its batch size
    assert std.coarse_guidance.weighting == "uniform" and std.coarse_guidance.anneal == "none"
    assert std.coarse_sds.shading.warmup == 2001 and std.coarse_sds.orientation == (10.0, 1000.0, 5000)
    assert (std.coarse_sds.sparsity_weight, std.coarse_sds.sparsity_form) == (1.0, "sqrt")
    assert (std.mesh.box, std.mesh.start, std.mesh.normal_weight, std.mesh.laplacian_weight) == ("object", "density",
                                                                                                 10000.0, 0.0)
    assert (std.mesh_sds.views.fov_min, std.mesh_sds.views.fov_max) == (30.0, 45.0)
    look = std.mesh_sds.shading
    assert look.mode == "mixed" and look.light.sample == "magic3d" and look.light.soft
    assert std.coarse_sds.shading.background == "learned" and look.background == "white"
    step = 2 * math.sqrt(3) / std.coarse.volume.n_samples_per_ray
    assert abs(step - 1.732 * 4 / 512) < 1e-3  # threestudio's step along the ray
    assert (fast.coarse.steps, fast.mesh.steps) == (2000, 1000)
    assert fast.coarse_guidance.schedule == fast.fine_guidance.schedule == "decreasing"
    assert draft.mesh.box == "scene" and draft.mesh_sds.shading.mode == "lambertian"
    assert not draft.coarse_sds.shading.light.varies


def test_a_tight_grid_survives_the_saved_state(tmp_path):
    from dreamsmith.core.geometry.dmtet import DMTetConfig, DMTetGeometry
    from dreamsmith.core.jobs.generate import generate_config
    from dreamsmith.core.scene.field import FieldConfig, NeRFField
    from dreamsmith.core.scene.state import load_state, save_state
    from dreamsmith.core.settings.config import to_dict

    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])
    cfg = generate_config("draft")
    field = NeRFField(FieldConfig(**{**cfg.coarse.field.__dict__}), bbox)
    tight = torch.tensor([[-0.3, -0.2, -0.4], [0.5, 0.3, 0.2]])
    geo = DMTetGeometry(DMTetConfig(resolution=8), tight)
    save_state(tmp_path / "s.safetensors", field, geo, to_dict(cfg) | {"mesh": to_dict(cfg)["mesh"] | {
        "dmtet": {"resolution": 8, "deform_scale": 0.5, "learn_deform": True}}})
    loaded = load_state(tmp_path / "s.safetensors", torch.device("cpu"))
    assert torch.equal(loaded.geo.bbox, tight) and torch.allclose(loaded.geo.grid_verts, geo.grid_verts)


@pytest.mark.parametrize("preset", ["fast", "standard", "high"])
def test_every_gpu_preset_loads_for_every_job(preset):
    from dreamsmith.core.jobs import JOBS

    for kind in JOBS.values():
        kind.config(preset)
