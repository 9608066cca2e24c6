import math

import torch

from dreamsmith.core.scene.cameras import orbit_cameras


def test_rays_and_projection_agree():
    cams = orbit_cameras(torch.tensor([0.0, 75.0, 200.0]), torch.tensor([10.0, 30.0, -5.0]), 3.0, 40.0, 32, 24)
    o, d = cams.rays()
    assert o.shape == (3, 24, 32, 3)
    # A point along the ray of pixel (row 5, col 20) projects back to that pixel centre.
    p = o[:, 5, 20] + 2.5 * d[:, 5, 20]
    for b in range(3):
        uv, depth = cams[b].pixel_coords(p[b:b + 1])
        assert torch.allclose(uv[0, 0], torch.tensor([20.5, 5.5]), atol=1e-3)
        clip = cams[b].project(p[b:b + 1])[0, 0]
        ndc = clip[:2] / clip[3]
        # Rasteriser convention: ndc = (2 * pixel + 1) / size - 1.
        assert torch.allclose(ndc, torch.tensor([2 * 20.5 / 32 - 1, 2 * 5.5 / 24 - 1]), atol=1e-4)
        assert depth[0, 0] > 0


def test_orbit_camera_front_is_minus_y_and_z_up():
    cams = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 2.0, 60.0, 16)
    assert torch.allclose(cams.centers[0], torch.tensor([0.0, -2.0, 0.0]), atol=1e-6)
    o, d = cams.rays()
    # Top rows look up (+Z), left columns look to -X.
    assert d[0, 0, 8, 2] > 0 and d[0, 8, 0, 0] < 0
    assert math.isclose(float(cams.fy[0]), 8 / math.tan(math.radians(30)), rel_tol=1e-5)


def test_a_mask_is_read_at_the_pixels_points_fall_in():
    """mask_at_points: the pixel a point projects into (or bilinear between centres), and whether it is seen at all
    (in front of the camera, inside its frame)."""
    from dreamsmith.core.scene.cameras import mask_at_points

    cam = orbit_cameras(torch.tensor([30.0]), torch.tensor([20.0]), 3.0, 40.0, 8, 6)
    o, d = cam.rays()
    mask = torch.zeros(1, 1, 6, 8)
    mask[0, 0, 2, 5] = 1.0
    on = o[0, 2, 5] + 2.0 * d[0, 2, 5]  # through the centre of pixel (row 2, col 5)
    beside = o[0, 2, 4] + 2.0 * d[0, 2, 4]
    behind = o[0, 2, 5] - 2.0 * d[0, 2, 5]
    outside = o[0, 0, 0] + 2.0 * (d[0, 0, 0] - 0.5 * (d[0, 5, 7] - d[0, 0, 0]))  # left of and above the frame
    points = torch.stack([on, beside, behind, outside])
    value, seen = mask_at_points(cam, mask, points)
    assert value.tolist()[:2] == [1.0, 0.0] and seen.tolist() == [True, True, False, False]
    half = o[0, 2, 5] + 2.0 * (d[0, 2, 5] + d[0, 2, 4]) / 2  # halfway between the two pixel centres
    smooth, _ = mask_at_points(cam, mask, torch.stack([on, half]), bilinear=True)
    assert torch.allclose(smooth, torch.tensor([1.0, 0.5]), atol=0.05)
    fine = mask.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # the same mask at 4x the camera's size
    for bilinear in (False, True):
        got, seen_fine = mask_at_points(cam, fine, points[:2], bilinear=bilinear)
        assert got.tolist() == [1.0, 0.0] and seen_fine.all()
