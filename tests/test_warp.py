"""The warp field: identity at rest, one-to-one (never folds) on every shared clip, background still."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLIPS, clip_landmarks, prepared

from livefake.landmarks import FaceLandmarks
from livefake.retarget import Retargeter
from livefake.warp import WarpSolver, fold_margin


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
    """Every frame of every shared clip, on two different source faces: the Jacobian determinant of the
    full-resolution backward field stays positive at every pixel, and the crop border stays put."""
    lms = clip_landmarks(clip)
    worst = np.inf
    kept_all = []
    for name in ("astronaut.png", "glasses_dim.jpg"):
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
