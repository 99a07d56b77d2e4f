"""The warp field: identity at rest, one-to-one (never folds) on every shared clip, background still."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLIPS, clip_landmarks, prepared

from livefake.landmarks import FaceLandmarks
from livefake.retarget import Retargeter
from livefake.warp import WarpConfig, WarpSolver, field_affine, field_points, fold_margin, tps_kernel, tps_system


def full_resolution_jacobian(field: np.ndarray, size: int) -> np.ndarray:
    """Determinant of the finite-difference Jacobian of the upsampled field at every pixel, relative to
    the identity's (1.0 = unchanged area)."""
    coarse = torch.from_numpy(field).permute(2, 0, 1)[None]
    dense = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)[0].numpy()
    dx = dense[:, :-1, 1:] - dense[:, :-1, :-1]
    dy = dense[:, 1:, :-1] - dense[:, :-1, :-1]
    det = dx[0] * dy[1] - dx[1] * dy[0]
    return det / (2.0 / size) ** 2


def test_neutral_target_gives_the_identity_field():
    src = prepared("astronaut.png")
    solver = WarpSolver(src.points, 256)
    field, kept, _ = solver.solve(src.points)
    assert kept == 1.0
    np.testing.assert_allclose(field, solver.identity, atol=1e-5)
    assert fold_margin(field) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("grid", [80, 37, 8])  # blocks of 9 and 19 rows, uneven; one block of 8
def test_the_field_is_the_spline_through_the_controls_at_every_node(grid):
    """The field (its kernel summed a block of node rows at a time, the border anchors' part kept from the
    start) equals the thin-plate spline through the controls evaluated at every node in float64."""
    src = prepared("astronaut.png")
    solver = WarpSolver(src.points, 256, WarpConfig(grid_size=grid))
    target = src.points.astype(np.float64).copy()
    target[target[:, 1] > src.points[13, 1], 1] += 6.0  # all below the upper lip drops: the jaw opens
    centres, values = solver.controls(target)
    field = solver.field(centres, values, stiffness=1e-3)
    diag = np.full(len(centres), solver.config.stiffness)
    diag[: len(centres) - len(solver._ring_src) - len(solver._anchors)] = 1e-3
    coef = np.linalg.solve(tps_system(centres, diag), np.r_[values, np.zeros((3, 2))])
    d2 = np.square(solver.nodes[:, None] - centres[None]).sum(axis=-1)
    expected = tps_kernel(d2) @ coef[:-3] + coef[-3] + solver.nodes @ coef[-2:]
    assert np.abs(field.reshape(-1, 2) - expected).max() * 128 < 0.01  # crop pixels


def test_field_lookup_agrees_with_the_generator_and_finds_the_local_affine():
    """field_points reads the coarse field as the generator's upsampling does; on a field solved for a known
    affine motion of the face, field_affine recovers its inverse near the face."""
    src = prepared("astronaut.png")
    solver = WarpSolver(src.points, 256)
    stretch = np.array([[1.1, 0.05], [0.0, 0.95]])
    target = src.points.astype(np.float64).copy()
    centre = target[:, :2].mean(axis=0)
    target[:, :2] = centre + (target[:, :2] - centre) @ stretch.T
    field, kept, _ = solver.solve(target)
    assert kept == 1.0
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 255, size=(40, 2))
    dense = F.interpolate(torch.from_numpy(field).permute(2, 0, 1)[None], size=(256, 256), mode="bilinear",
                          align_corners=True)[0].numpy()
    x0, y0 = np.floor(points).astype(int).T
    fx, fy = (points - np.floor(points)).T
    x1, y1 = np.minimum(x0 + 1, 255), np.minimum(y0 + 1, 255)
    unit = ((1 - fy) * ((1 - fx) * dense[:, y0, x0] + fx * dense[:, y0, x1])
            + fy * ((1 - fx) * dense[:, y1, x0] + fx * dense[:, y1, x1])).T
    # Bilinear over bilinear: equal up to the nodes' spacing squared's share (a fraction of a pixel).
    np.testing.assert_allclose(field_points(field, 256, points), (unit + 1) * 128 - 0.5, atol=0.05)
    where, jacobian = field_affine(field, 256, target[4, :2])  # the nose tip
    np.testing.assert_allclose(where, src.points[4, :2], atol=0.3)
    np.testing.assert_allclose(jacobian, np.linalg.inv(stretch), atol=0.03)


def test_fold_guard_scales_back_a_folding_motion():
    src = prepared("astronaut.png")
    solver = WarpSolver(src.points, 256)
    target = src.points.copy()
    target[13, 1] += 60.0  # upper inner lip dragged far below the lower one
    field, kept, _ = solver.solve(target)
    assert kept < 1.0
    assert full_resolution_jacobian(field, 256).min() > 0


@pytest.mark.parametrize("clip", CLIPS)
def test_warp_never_folds_on_real_driving(clip):
    """Every frame of every shared clip, on three different source faces (o_mouth.jpg's wide-open mouth shut,
    widened and its corners moved by the retargeter): the Jacobian determinant of the full-resolution
    backward field stays positive at every pixel, and the crop border stays put."""
    lms = clip_landmarks(clip)
    worst = np.inf
    kept_all = []
    for name in ("astronaut.png", "glasses_dim.jpg", "o_mouth.jpg"):
        src = prepared(name)
        solver = WarpSolver(src.points, 256)
        retargeter = Retargeter(src)
        for i, points in enumerate(lms):
            face = None if points is None else FaceLandmarks(points, 512, 512)
            motion = retargeter.update(face, i / 30)
            field, kept, _ = solver.solve(motion.target)
            kept_all.append(kept)
            if i % 3 == 0:
                worst = min(worst, float(full_resolution_jacobian(field, 256).min()))
                border = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
                ident = np.concatenate([solver.identity[0], solver.identity[-1], solver.identity[:, 0],
                                        solver.identity[:, -1]])
                # The crop edge stays within 3 px even when the driver walks up to the camera (harsh_light);
                # the paste-back mask is below 0.04 there, so the photo itself shows.
                assert np.abs(border - ident).max() * 128 < 3.0
    assert worst > 0
    assert np.mean(np.array(kept_all) == 1.0) > 0.9  # the guard is a rare safety net, not the rule
