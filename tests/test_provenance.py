"""Provenance: the invisible watermark on real frames, through what a video call does to them, and the
badge, the file tag and ``livefake detect``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import IMAGES, clip_frames, face_file, prepared

from livefake import __version__, channel
from livefake import face_regions as fr
from livefake.backends import BackendConfig
from livefake.cli import main
from livefake.detect import detect_file
from livefake.provenance import Provenance, ProvenanceConfig, around_mouth
from livefake.reenactor import ReenactConfig, Reenactor
from livefake.watermark import Embedder, Payload, canonical_residual, read_mark

PAYLOAD = Payload.for_version(__version__, 4242)


def marked(frames, payload: Payload = PAYLOAD) -> list[np.ndarray]:
    embedder = Embedder(payload)
    return [embedder.mark_(np.array(f)) for f in frames]


def window(frames) -> np.ndarray:
    return np.mean([canonical_residual(f) for f in frames], axis=0)


def test_payload_round_trips_and_a_misread_bit_is_caught():
    bits = PAYLOAD.to_bits()
    assert len(bits) == 40 and Payload.from_bits(bits) == PAYLOAD
    for i in (0, 17, 39):
        flipped = bits.copy()
        flipped[i] ^= 1
        assert Payload.from_bits(flipped) is None
    assert str(PAYLOAD) == f"livefake {__version__}, user id 4242"
    assert Payload.from_bits(np.zeros(40, np.uint8)) is None and Payload.from_bits(np.ones(40, np.uint8)) is None
    with pytest.raises(ValueError):
        Payload((0, 1, 0), 1 << 16)


def test_the_mark_is_faint_leaves_luma_alone_and_is_weakest_on_flat_areas():
    photo = prepared("glasses_dim.jpg", output_size=(1280, 720)).photo
    out = marked([photo])[0]
    assert cv2.PSNR(out, photo) >= 40.0
    luma = (out.astype(np.float32) - photo) @ np.array([0.299, 0.587, 0.114], np.float32)
    unclipped = (photo.min(axis=2) > 12) & (photo.max(axis=2) < 243)
    assert np.abs(luma[unclipped]).max() <= 1.0  # all of it is in the blue-yellow chroma; rounding only in luma
    grey = np.full((720, 1280, 3), 128, np.uint8)
    change = marked([grey])[0].astype(np.float32) - grey
    assert np.abs(change @ np.array([0.299, 0.587, 0.114], np.float32)).max() <= 1.0
    cb = change @ np.array([-0.168736, -0.331264, 0.5], np.float32)
    busy = (out.astype(np.float32) - photo) @ np.array([-0.168736, -0.331264, 0.5], np.float32)
    assert cb.std() < 1.0 < busy.std()  # a flat frame gets a third of what a busy photo does
    lab = cv2.cvtColor(marked([grey])[0].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    delta_e = np.linalg.norm(lab - cv2.cvtColor(grey.astype(np.float32) / 255, cv2.COLOR_RGB2Lab), axis=2)
    assert delta_e.mean() < 1.0  # below a just-noticeable colour difference (about 2.3) on average
    assert np.abs(np.diff(cb, axis=1)).mean() < 0.3  # smooth: no fine pattern from pixel to pixel


def test_marked_frames_are_found_with_their_payload_and_unmarked_ones_are_not():
    for name in IMAGES:
        photo = np.ascontiguousarray(prepared(name).photo)
        found = read_mark(canonical_residual(marked([photo])[0]))
        assert found.marked() and found.p_value < 1e-9, name
        assert read_mark(canonical_residual(photo)).p_value > 1e-2, name  # chance, on the real unmarked photo
    found = read_mark(canonical_residual(marked([prepared("o_mouth.jpg").photo])[0]))
    assert found.payload == PAYLOAD


def test_the_mark_survives_h264_crf30_at_360p_in_a_one_second_window():
    frames = [cv2.resize(f, (720, 720)) for f in clip_frames("talking.mp4", 30)]
    sent = channel.h264(marked(frames), crf=30, height=360)
    found = read_mark(window(sent))
    assert found.marked() and np.mean(found.bits == PAYLOAD.to_bits()) >= 0.9
    unmarked = read_mark(window(channel.h264(frames, crf=30, height=360)))
    assert not unmarked.marked()


def test_the_mark_survives_crop_jpeg_and_brightness_on_one_frame():
    photo = prepared("glasses_dim.jpg", output_size=(1280, 720)).photo
    out = marked([photo])
    for name, attacked in [("crop 10 %", channel.crop(out, 0.10)), ("JPEG 50", channel.jpeg(out, 50)),
                           ("brightness", channel.brightness_contrast(out, 0.8, 30)),
                           ("all three", channel.jpeg(channel.brightness_contrast(channel.crop(out, 0.1), 1.2, -20)))]:
        found = read_mark(canonical_residual(attacked[0]))
        assert found.marked(), name
    assert read_mark(canonical_residual(channel.crop(out, 0.10)[0])).scale > 1.05  # it found the crop's zoom


def test_the_embedder_is_one_tensor_op_in_place_on_numpy_and_torch_alike():
    frame = clip_frames("glasses.mp4", 1)[0]
    embedder = Embedder(PAYLOAD)
    as_numpy = np.array(frame)
    assert embedder.mark_(as_numpy) is as_numpy
    as_tensor = torch.from_numpy(np.array(frame))
    embedder.mark_(as_tensor)
    assert np.array_equal(as_tensor.numpy(), as_numpy) and not np.array_equal(as_numpy, frame)
    expected = np.clip(frame.astype(np.int16) + embedder.delta(frame), 0, 255)
    assert np.array_equal(as_numpy, expected)  # exactly clip(frame + delta): saturating, never wrapping
    with pytest.raises(ValueError):
        embedder.mark_(np.zeros((8, 8, 4), np.uint8))


def test_badge_is_drawn_in_the_corner_unless_turned_off():
    photo = np.ascontiguousarray(prepared("astronaut.png").photo)
    with_badge = Provenance().apply_(photo.copy())
    without = Provenance(ProvenanceConfig(badge=False)).apply_(photo.copy())
    h, w = photo.shape[:2]
    corner = (slice(int(h * 0.85), h), slice(int(w * 0.8), w))
    rest = (slice(0, int(h * 0.8)), slice(None))
    assert np.array_equal(with_badge[rest], without[rest])
    diff = np.abs(with_badge[corner].astype(int) - without[corner]).max(axis=2)
    assert (diff > 60).sum() > 100  # the text and its box
    assert with_badge[corner].min(axis=2).max() > 230  # white letters
    with pytest.raises(ValueError):
        ProvenanceConfig(badge_text="  ")
    with pytest.raises(ValueError):
        ProvenanceConfig(user_id=1 << 16)


def test_render_marks_tags_and_detect_finds_it(tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["render", "--source", str(face_file("images", "o_mouth.jpg")), "--driving",
                 str(face_file("videos", "mouth_open.mp4")), "--output", str(out), "--max-frames", "45",
                 "--quiet", "--mark-id", "77", "--no-badge"]) == 0
    capsys.readouterr()
    report = detect_file(out)
    assert report.marked and report.whole.p_value < 1e-12
    assert report.payload == Payload.for_version(__version__, 77)
    assert len(report.frames) == 45 and len(report.windows) == 2
    assert all(w.reading.marked() for w in report.windows)
    assert report.tag is not None and f"livefake {__version__}" in report.tag
    assert main(["detect", str(out), "--json", str(tmp_path / "d.json")]) == 0
    text = capsys.readouterr().out
    assert "watermark FOUND" in text and "user id 77" in text and (tmp_path / "d.json").stat().st_size > 100


def test_detect_on_real_unmarked_media_says_no_and_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["detect", str(face_file("videos", "glasses.mp4")), "--max-frames", "60"]) == 1
    assert "no livefake watermark found" in capsys.readouterr().out
    assert main(["detect", str(face_file("images", "roll_hand.jpg"))]) == 1
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "nothing.mp4")]) == 2  # not "not found": it could not look
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file" in err


def test_help_says_who_carries_the_duty_without_the_badge(capsys):
    for argv in (["--help"], ["render", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert "--no-badge" in text and "duty to tell" in text


def test_a_mirrored_frame_is_found_and_an_unmarked_read_names_no_payload():
    photo = np.ascontiguousarray(prepared("o_mouth.jpg").photo)
    out = marked([photo])[0]
    found = read_mark(canonical_residual(np.ascontiguousarray(out[:, ::-1])))
    assert found.marked() and found.mirrored and found.payload == PAYLOAD
    assert not read_mark(canonical_residual(out), mirrored=False).mirrored
    for frame in clip_frames("harsh_light.mp4", 40)[::8]:  # real, unmarked: no payload is ever read out
        assert read_mark(canonical_residual(frame)).payload is None


def test_pass_through_frames_are_marked_with_a_strength_map_of_their_own():
    stage = Provenance(ProvenanceConfig(badge=False))
    photo = np.ascontiguousarray(prepared("glasses_dim.jpg", output_size=(640, 480)).photo)
    webcam = np.ascontiguousarray(cv2.resize(clip_frames("glasses.mp4", 1)[0], (640, 480)))
    stage.apply_(photo.copy())
    as_output = stage.apply_(webcam.copy()).astype(np.int16) - webcam
    as_webcam = stage.apply_(webcam.copy(), passthrough=True).astype(np.int16) - webcam
    assert not np.array_equal(as_output, as_webcam)  # shaped by the webcam picture, not by the photo
    assert read_mark(canonical_residual(webcam + as_webcam)).marked()
    with pytest.raises(ValueError):
        stage.apply_(np.zeros((480, 640, 3), np.uint8)[:, ::2])  # refused before anything is drawn


def test_the_mark_holds_back_around_the_mouth_and_is_still_found():
    # The lips change most from the photo the mark is shaped by; at full strength there it moved
    # MediaPipe's reading of the output's mouth.
    source = prepared("astronaut.png")
    frames = clip_frames("talking.mp4", 3)
    cpu = BackendConfig("cpu")  # two runs of one backend give the same frames, so the difference is the mark
    plain = ReenactConfig(provenance=ProvenanceConfig(badge=False, watermark=False), backend=cpu)
    with Reenactor(source, plain) as bare, Reenactor(source, ReenactConfig(backend=cpu)) as shipped:
        for i, frame in enumerate(frames):
            unmarked, output = bare.process(frame, i / 30).frame, shipped.process(frame, i / 30).frame
    points = source.transform.to_photo(source.points)
    face = np.zeros(output.shape[:2], np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(points[list(fr.FACE_OVAL)].astype(np.int32)), 1)
    zone = around_mouth(source)
    change = np.abs(output.astype(np.int16) - unmarked).sum(axis=2)
    change[face == 0] = 0
    assert change[zone > 0.9].mean() < 0.4 * change[(zone < 0.25) & (face == 1)].mean()
    assert read_mark(canonical_residual(output)).marked()  # one frame (the payload needs a window here: README)
