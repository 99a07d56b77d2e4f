"""The generator module: agrees with its function, reproduces the source at rest, opens the mouth,
and exports to ONNX with the same output in ONNX Runtime (real faces, real driving frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import clip_frames, measure_faces, prepared

from livefake import face_regions as fr
from livefake.color import ReinhardMatch, lab_to_rgb, masked_lab_stats, relight_transfer, rgb_to_lab
from livefake.generator import GeneratorInputs, ReenactmentGenerator, image_to_tensor, reenact_crop
from livefake.landmarks import LandmarkDetector
from livefake.mouth import (
    SHUT_LIP_CHROMA,
    STRETCH_KEEP,
    MouthGeometry,
    opening_aspect,
    shut_mouth_crop,
    skin_view,
    stretch_opening,
)
from livefake.reenactor import Reenactor


def frame_inputs(size: int = 256, frame: int = 140, clip: str = "mouth_open.mp4",
                 photo: str = "glasses_dim.jpg") -> tuple[Reenactor, GeneratorInputs]:
    """Generator inputs for one frame (default: a wide-open mouth of mouth_open.mp4 driving glasses_dim.jpg)."""
    frames = clip_frames(clip, frame + 1)
    r = Reenactor(prepared(photo, size))
    for i, f in enumerate(frames[:-1]):
        r.plan_frame(f, i / 30)
    return r, r.generator_inputs(r.plan_frame(frames[-1], frame / 30))


def test_module_matches_function_and_opens_the_mouth():
    r, inputs = frame_inputs()
    generator = ReenactmentGenerator(r.size).eval()
    with torch.inference_mode():
        out = generator(*inputs)
        ref = reenact_crop(inputs, generator.axis)
    assert out.shape == (1, 3, 256, 256)
    torch.testing.assert_close(out, ref)
    assert inputs.mouth_mask.max() > 0.9 and inputs.recolor.item() == 1.0
    # Inside the opened mouth the output is the driver's interior, not the source's lips: its dark cavity
    # puts a quarter of it or more below what nine tenths of the source shows there (the source: a tenth).
    inside = inputs.mouth_mask[0, 0] > 0.9
    shown, replaced = out[0][:, inside].mean(dim=0), inputs.source[0][:, inside].mean(dim=0)
    assert (shown < replaced.quantile(0.1)).float().mean() > 0.25


def test_transplanted_interior_keeps_a_mouth_colour_across_lighting():
    """rotation.mp4's warm, dim light onto the cooler astronaut photo: the interior must stay a dark red,
    not turn blue or green."""
    r, inputs = frame_inputs(frame=330, clip="rotation.mp4", photo="astronaut.png")
    generator = ReenactmentGenerator(r.size).eval()
    with torch.inference_mode():
        out = generator(*inputs)
    inside = inputs.mouth_mask[0, 0] > 0.95
    assert inside.sum() > 50
    lab = rgb_to_lab(out)[0][:, inside].mean(dim=1)
    assert lab[0] < 60 and lab[1] > 3 and lab[2] > -3  # dark, reddish, not blue


def test_transplanted_interior_keeps_its_darkness_under_brighter_light():
    """harsh_light.mp4's sun-tanned, shadowed face onto the bright astronaut photo: the driver's open mouth
    is about two thirds as light as the skin around it (in L + 16, where a change of light is a factor),
    and so must the transplanted one be against the photo's skin (Reinhard's mean shift made it pale grey)."""
    for index in (100, 135):
        r, inputs = frame_inputs(frame=index, clip="harsh_light.mp4", photo="astronaut.png")
        with torch.inference_mode():
            out = ReenactmentGenerator(r.size).eval()(*inputs)
        inside = inputs.mouth_mask[0, 0] > 0.95
        assert inside.sum() > 200
        frame = clip_frames("harsh_light.mp4", index + 1)[-1]
        with LandmarkDetector(video=False) as detector:
            points = detector.detect(frame).points
        opening = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.round(points[list(fr.LIPS_INNER), :2]).astype(np.int32)], 1)
        opening = cv2.erode(opening, np.ones((3, 3), np.uint8)).astype(bool)
        driver_mouth = rgb_to_lab(image_to_tensor(frame))[0, 0][torch.from_numpy(opening)].mean()
        driver_skin = inputs.driver_stats[0, 0, 0]
        out_mouth = rgb_to_lab(out)[0, 0][inside].mean()
        photo_skin = inputs.source_stats[0, 0, 0]
        driver_ratio = (driver_mouth + 16) / (driver_skin + 16)
        assert driver_ratio < 0.7  # a dark mouth in the driver
        assert abs((out_mouth + 16) / (photo_skin + 16) / driver_ratio - 1) < 0.1


def test_a_taller_target_opening_stretches_the_cavity_not_the_teeth():
    """mouth_open.mp4 half open (frame 96): made 1.8 times taller, the driver's opening keeps the upper
    lip and the band of teeth under it as they were, moves the lower lip and all below it down by the
    added height, and says where its lower lip now is."""
    frame = clip_frames("mouth_open.mp4", 97)[96]
    with LandmarkDetector(video=False) as det:
        points = det.detect(frame).points
    geometry = MouthGeometry(points, 256, patch_size=64)
    patch, inner = geometry.cut_patch(points, frame)
    factor = 1.8
    tall, moved = stretch_opening(patch, inner, factor)
    assert opening_aspect(moved) == pytest.approx(factor * opening_aspect(inner), rel=0.05)
    np.testing.assert_array_equal(moved[:11], inner[:11])  # the upper lip and corners stay
    x = int(round(inner[15, 0]))  # the middle of the mouth: lower lip point 14, under upper lip point 13
    top, bottom = inner[5, 1], inner[15, 1]
    gap = bottom - top
    assert gap > 3 and moved[15, 1] == pytest.approx(bottom + (factor - 1) * gap, abs=0.3)
    column, stretched = patch[:, x].astype(float), tall[:, x].astype(float)
    above = int(np.floor(top))
    np.testing.assert_array_equal(stretched[:above], column[:above])  # above the opening: untouched
    teeth = np.arange(int(np.ceil(top)), int(top + STRETCH_KEEP * gap))  # the band under the upper lip
    assert np.abs(stretched[teeth] - column[teeth]).max() < 3
    shift = moved[15, 1] - bottom  # what the lower lip's point says it moved
    below = np.arange(int(np.ceil(bottom + shift)), int(np.ceil(bottom + shift)) + 8)  # the lower lip, moved down
    tries = np.arange(shift - 1.5, shift + 1.5, 0.05)  # the shift that best explains the moved lip
    errors = [np.abs(stretched[below] - np.stack([np.interp(below - t, np.arange(len(column)), column[:, c])
                                                  for c in range(3)], axis=1)).max() for t in tries]
    assert abs(tries[int(np.argmin(errors))] - shift) < 0.2 and min(errors) < 3
    # Not taller: nothing changes. A driver with its lips exactly together: nothing to stretch, no error.
    same = stretch_opening(patch, inner, 0.8)
    assert same[0] is patch and same[1] is inner
    shut = points.copy()
    shut[[p[1] for p in fr.LIPS_INNER_PAIRS]] = shut[[p[0] for p in fr.LIPS_INNER_PAIRS]]
    shut_patch, shut_inner = geometry.cut_patch(shut, frame)
    np.testing.assert_array_equal(stretch_opening(shut_patch, shut_inner, 6.0)[0], shut_patch)
    opened = MouthGeometry(points, 480, patch_size=64, shut=True).inputs(points, shut, frame)
    assert opened.mask.max() > 0.9 and np.isfinite(opened.affine).all()
    # Through MouthGeometry.inputs: a target opened 1.8 times taller than the driver gets the stretched
    # patch, and the affine lays the target's inner lips onto the stretched ones.
    inner_ids = list(fr.LIPS_INNER)
    target = points.copy()
    lower_ids = [p[1] for p in fr.LIPS_INNER_PAIRS]
    target[lower_ids, 1] += 0.8 * (points[lower_ids, 1] - points[[p[0] for p in fr.LIPS_INNER_PAIRS], 1])
    got = MouthGeometry(points, 480, patch_size=64, shut=True).inputs(target, points, frame)
    expected = stretch_opening(patch, inner, opening_aspect(target[inner_ids]) / opening_aspect(inner))[1]
    assert not np.array_equal(got.patch, patch)
    unit = (target[inner_ids, :2] + 0.5) * (2.0 / 480) - 1.0
    laid = ((unit @ got.affine[:, :2].T + got.affine[:, 2]) + 1.0) * 32 - 0.5  # patch pixels
    assert np.abs(laid - expected).max() < 1.0


def test_skin_light_measured_on_the_cpu_agrees_with_the_generators_lab():
    """The driver's skin statistics are taken through OpenCV's LAB on a small view; the generator converts
    the interior with its own (torch) LAB. On a real frame both read the same skin within half a unit,
    and the bright astronaut photo's skin reads lighter than harsh_light.mp4's tanned, shadowed face."""
    frame = clip_frames("harsh_light.mp4", 1)[0]
    with LandmarkDetector(video=False) as det:
        points = det.detect(frame).points
    stats = MouthGeometry.skin_stats(points, frame)
    view, ring = skin_view(points)
    assert 0.2 < (ring > 0).mean() < 0.4  # skin around the lips, not the lips: the ellipse holds about a third
    reference = masked_lab_stats(rgb_to_lab(image_to_tensor(view.cut(frame))),
                                 torch.from_numpy(ring.astype(np.float32) / 255)[None, None])[0].numpy()
    np.testing.assert_allclose(stats, reference, atol=0.5)
    bright = prepared("astronaut.png")
    assert MouthGeometry.skin_stats(bright.points, bright.crop)[0, 0] > stats[0, 0] + 10


def test_identity_field_reproduces_the_source():
    r, inputs = frame_inputs()
    generator = ReenactmentGenerator(r.size).eval()
    still = inputs._replace(warp_field=torch.from_numpy(r.warp.identity)[None],
                            mouth_mask=torch.zeros_like(inputs.mouth_mask), shading=torch.ones_like(inputs.shading))
    with torch.inference_mode():
        out = generator(*still)
    assert (out - inputs.source).abs().max() < 1e-4


def test_lab_round_trip_and_reinhard_moves_statistics():
    src = torch.from_numpy(prepared("glasses_dim.jpg").crop).permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(src)), src, atol=2e-4, rtol=0)
    target = masked_lab_stats(rgb_to_lab(src * 0.6 + 0.2), torch.ones(1, 1, 256, 256))
    matched = ReinhardMatch()(src, torch.ones(1, 1, 256, 256), target)
    got = masked_lab_stats(rgb_to_lab(matched), torch.ones(1, 1, 256, 256))
    torch.testing.assert_close(got, target, atol=1.0, rtol=0.02)


def test_onnx_export_matches_torch_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    r, inputs = frame_inputs()
    generator = ReenactmentGenerator(r.size).eval()
    path = tmp_path / "generator.onnx"
    names = list(GeneratorInputs._fields)
    torch.onnx.export(generator, tuple(inputs), str(path), input_names=names, output_names=["crop"],
                      opset_version=17, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    with torch.inference_mode():
        want = generator(*inputs).numpy()
    assert np.abs(got - want).max() <= 1e-3
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" in ops and not ops & {"Loop", "If"}  # static graph, no data-dependent control flow


def test_a_shut_mouth_crop_fills_the_opening_and_deepens_the_lips_only():
    """o_mouth.jpg's crop, as the retargeter shuts it: the dark "O" is filled, the lips differ from the skin
    around them in LAB chroma up to SHUT_LIP_CHROMA times as much, and every pixel a few away from the lips
    stays."""
    src = prepared("o_mouth.jpg")
    out = shut_mouth_crop(src.crop, src.points)
    lab_before = cv2.cvtColor(src.crop.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    lab_after = cv2.cvtColor(out.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    skin = MouthGeometry.skin_stats(src.points, src.crop)[0]
    outer = np.zeros(src.crop.shape[:2], np.uint8)
    cv2.fillPoly(outer, [np.round(src.points[list(fr.LIPS_OUTER), :2]).astype(np.int32)], 1)
    inner = np.zeros_like(outer)
    cv2.fillPoly(inner, [np.round(src.points[list(fr.LIPS_INNER), :2]).astype(np.int32)], 1)
    lips = outer & (1 - cv2.dilate(inner, np.ones((3, 3), np.uint8)))
    assert lips.sum() > 30  # the thin lips of an "O" at 256
    chroma = [np.linalg.norm((lab[lips > 0, 1:] - skin[1:]).mean(axis=0)) for lab in (lab_before, lab_after)]
    # Deepened SHUT_LIP_CHROMA times in the lips' middle, less where their feathered edge meets the skin.
    assert 0.75 * SHUT_LIP_CHROMA * chroma[0] < chroma[1] < 1.02 * SHUT_LIP_CHROMA * chroma[0]
    hole = 0.5 * (src.points[13, :2] + src.points[14, :2])
    x, y = np.round(hole).astype(int)
    assert lab_after[y, x, 0] > lab_before[y, x, 0] + 15  # the opening is filled, lighter than the dark mouth
    away = cv2.dilate(outer, np.ones((9, 9), np.uint8)) == 0
    np.testing.assert_array_equal(out[away], src.crop[away])


def test_teeth_carried_into_a_photo_whose_skin_varies_more_stay_white():
    """The skin around mouth_open.jpg's lips spreads 3.9 times as far in b* as talking.mp4's: scaled by that,
    white teeth (b* 3, 20 below the driver's skin) came out b* -99, blue. The spread's ratio is bounded, so
    they stay a light neutral; lightness still follows the photo's darker skin."""
    frame = clip_frames("talking.mp4", 1)[0]
    (points,) = measure_faces([frame])
    assert points is not None
    src = prepared("mouth_open.jpg")
    driver = torch.from_numpy(MouthGeometry.skin_stats(points, frame))[None]
    photo = torch.from_numpy(MouthGeometry.skin_stats(src.points, src.crop))[None]
    assert photo[0, 1, 2] > 3 * driver[0, 1, 2] and driver[0, 0, 2] - 3.0 > 15
    teeth = torch.tensor([88.0, 1.0, 3.0]).view(1, 3, 1, 1)
    out = relight_transfer(teeth, driver, photo)[0, :, 0, 0]
    assert abs(float(out[1])) < 8 and abs(float(out[2])) < 8
    assert 50 < float(out[0]) < 88  # darker, as the photo's skin is darker than the driver's
