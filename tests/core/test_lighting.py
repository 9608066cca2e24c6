"""The camera-fixed light of the lit SDS renders, and its agreement with the toy prior's training renders."""

from pathlib import Path

import torch
import torch.nn.functional as F

from dreamsmith.core.jobs.generate import generate_config
from dreamsmith.core.jobs.retexture import retexture_config
from dreamsmith.core.render.mesh import render_mesh
from dreamsmith.core.render.shading import LightConfig, ShadingConfig
from dreamsmith.core.render.volume import VolumeConfig, VolumeRenderer
from dreamsmith.core.scene.cameras import camera_light, orbit_cameras
from dreamsmith.core.settings.presets import TOY_PRIOR_LIGHT

REPO = Path(__file__).resolve().parents[2]

UPPER_LEFT = (-0.5, 0.6)


class _Sphere:
    bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])

    def density(self, x):
        return 80.0 * (x.norm(dim=-1) < 0.5).float()

    def __call__(self, x):
        return self.density(x), torch.ones(x.shape[0], 3)

    def normals(self, x):
        return F.normalize(x, dim=-1)


def _uv_sphere(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """A unit sphere mesh: ``n`` rings of ``2 n`` vertices between two poles."""
    th = torch.linspace(0, torch.pi, n + 2)[1:-1]
    ph = torch.arange(2 * n) * (2 * torch.pi / (2 * n))
    ring = torch.stack([th.sin()[:, None] * ph.cos(), th.sin()[:, None] * ph.sin(),
                        th.cos()[:, None].expand(n, 2 * n)], -1).reshape(-1, 3)
    v = torch.cat([torch.tensor([[0.0, 0.0, 1.0]]), ring, torch.tensor([[0.0, 0.0, -1.0]])])
    m, faces = 2 * n, []
    for j in range(m):  # caps
        faces += [[0, 1 + j, 1 + (j + 1) % m], [len(v) - 1, 1 + (n - 1) * m + (j + 1) % m, 1 + (n - 1) * m + j]]
    for i in range(n - 1):
        for j in range(m):
            a, b = 1 + i * m + j, 1 + i * m + (j + 1) % m
            faces += [[a, a + m, b], [b, a + m, b + m]]
    return v, torch.tensor(faces)


def test_camera_light_is_fixed_to_the_camera_frame():
    cams = orbit_cameras(torch.tensor([0.0, 30.0, 250.0]), torch.tensor([0.0, 20.0, 55.0]), 2.0, 40.0, 16)
    head = camera_light(cams, (0.0, 0.0))
    assert torch.allclose(head, F.normalize(cams.centers, dim=-1), atol=1e-6)  # towards the camera
    lit = camera_light(cams, UPPER_LEFT)
    rot = cams.c2w[:, :3, :3]
    assert torch.allclose(lit.norm(dim=-1), torch.ones(3))
    assert bool(((lit * rot[:, :, 0]).sum(-1) < -0.3).all())  # to the camera's left
    assert bool(((lit * rot[:, :, 1]).sum(-1) > 0.3).all())  # and above it
    assert bool(((lit * rot[:, :, 2]).sum(-1) > 0.5).all())  # still in front of the object


def test_volume_and_mesh_renders_light_a_sphere_from_the_upper_left_alike():
    size = 32
    cams = orbit_cameras(torch.tensor([40.0]), torch.tensor([15.0]), 2.0, 40.0, size)
    vol = VolumeRenderer(VolumeConfig(n_samples_per_ray=160),
                         ShadingConfig(light=LightConfig(offset=UPPER_LEFT)))
    a = vol.render_image(_Sphere(), cams, None, shading="lambertian")["rgb"][0].mean(-1)
    v, f = _uv_sphere()
    m = render_mesh(v * 0.5, f, cams, lambda p: torch.ones(p.shape[0], 3), torch.ones(1, 1, 1, 3),
                    shading="lambertian", light=LightConfig(offset=UPPER_LEFT))["rgb"][0].mean(-1)
    idx = torch.arange(size)
    inner = ((idx[:, None] - 15.5) ** 2 + (idx[None, :] - 15.5) ** 2).sqrt() < 6
    upper_left = inner & (idx[:, None] < 14) & (idx[None, :] < 14)
    lower_right = inner & (idx[:, None] > 17) & (idx[None, :] > 17)
    for img in (a, m):  # row 0 is the top of the image
        assert img[upper_left].mean() > img[lower_right].mean() + 0.2
    assert float((a - m)[inner].abs().mean()) < 0.05  # the same light in both renderers
    head = render_mesh(v * 0.5, f, cams, lambda p: torch.ones(p.shape[0], 3), torch.ones(1, 1, 1, 3),
                       shading="lambertian")["rgb"][0].mean(-1)
    assert abs(float(head[upper_left].mean() - head[lower_right].mean())) < 0.05  # the default is a headlight


def test_draft_presets_render_with_the_toy_prior_light():
    from dreamsmith.eval.toy_prior_data import LIGHT

    assert LIGHT.offset == TOY_PRIOR_LIGHT
    gen = generate_config("draft")
    assert gen.coarse_sds.shading.light == LIGHT  # the whole shading: ambient, diffuse and where the light is
    assert gen.mesh_sds.shading.light == LIGHT
    assert retexture_config("draft").mesh_sds.shading.light == LIGHT
    assert generate_config("standard").coarse_sds.shading.light.offset == (0.0, 0.0)  # real priors: headlight
