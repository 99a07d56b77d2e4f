"""Landmarks on real photos, image formats, the aligned crop and the messages for bad photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import IMAGES, clip_frames, face_file, prepared
from PIL import Image

from livefake import face_regions as fr
from livefake.errors import LivefakeError, NoFaceError
from livefake.image_io import load_rgb
from livefake.landmarks import LandmarkDetector
from livefake.source import face_crop_transform, prepare_source, read_photo_face, square_view


@pytest.mark.parametrize("name", IMAGES)
def test_landmarks_on_every_image(name):
    rgb = load_rgb(face_file("images", name))
    with LandmarkDetector(video=False) as detector:
        face = detector.detect(rgb)
    assert face is not None
    assert face.points.shape == (478, 3)
    h, w = rgb.shape[:2]
    assert face.outside_fraction() == 0.0
    # Anatomy in pixels: eyes above the mouth, the right eye on the image's left, a plausible face size.
    assert face.points[[33, 263], 1].mean() < face.points[13, 1] < face.points[152, 1]
    assert face.points[33, 0] < face.points[263, 0]
    assert 0.1 * w < fr.interocular(face.points) < 0.9 * w


def test_landmarks_read_from_the_wire_bytes_equal_the_slow_loop_and_odd_layouts_fall_back():
    import mediapipe as mp

    from livefake.landmarks import _normalized_points

    rgb = load_rgb(face_file("images", "roll_hand.jpg"))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        face = mesh.process(rgb).multi_face_landmarks[0]
    slow = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)
    assert np.array_equal(_normalized_points(face, 478), slow)
    face.landmark[5].visibility = 0.5  # another layout (a field more): the loop reads it, the same values
    assert np.array_equal(_normalized_points(face, 478), slow)


def test_mouth_measure_tells_open_from_closed():
    open_face = prepared("mouth_open.jpg").points
    closed = prepared("glasses_dim.jpg").points
    assert fr.mouth_openness(open_face) > 0.25 > 0.05 > fr.mouth_openness(closed)


def test_largest_of_several_faces_is_used(caplog):
    big = load_rgb(face_file("images", "o_mouth.jpg"))
    small = np.asarray(Image.fromarray(load_rgb(face_file("images", "mouth_open.jpg"))).resize((540, 540)))
    canvas = np.full((big.shape[0], big.shape[1] + 540, 3), 128, np.uint8)
    canvas[:, :720] = big
    canvas[90:630, 720:] = small
    with LandmarkDetector(video=False, max_faces=4) as detector:
        face = detector.detect(canvas)
    assert face is not None and face.faces_found == 2
    assert face.points[:, 0].max() < 720  # the big face on the left
    with caplog.at_level("WARNING"):
        prepare_source(canvas, name="pair")
    assert "2 faces" in caplog.text


def test_crop_is_aligned_and_maps_back():
    src = prepared("roll_hand.jpg")  # head rolled about 15-20 degrees in the photo
    pts = src.points
    assert abs(pts[33, 1] - pts[263, 1]) < 0.02 * src.crop.shape[0]  # eyes level in the crop
    back = src.transform.to_photo(pts)
    with LandmarkDetector(video=False, max_faces=4) as detector:  # as prepare_source reads it
        again = read_photo_face(detector, src.photo)
    assert np.abs(back - again.points[:, :2]).max() < 1e-3 * src.photo.shape[1] + 1e-2


def test_a_face_cut_smaller_is_averaged_not_aliased_and_stays_in_place():
    """talking.mp4's face fills a 256 crop three times smaller than the frame: each crop pixel must be the
    mean of the photo pixels under it (as an area resize gives), not one sampled point of them."""
    photo = clip_frames("talking.mp4", 1)[0]
    # Level, three photo pixels a crop pixel: crop pixel i covers photo pixels 3i .. 3i+2 from (30, 20), so
    # its centre is photo pixel 3i + 1 from there (square_view puts ``centre`` at crop pixel 64).
    view = square_view(np.array([30 + 3 * 64 + 1, 20 + 3 * 64 + 1], np.float64), 0.0, 3.0 * 128, 128)
    area = cv2.resize(photo[20:20 + 384, 30:30 + 384], (128, 128), interpolation=cv2.INTER_AREA)
    sampled = photo[21:21 + 384:3, 31:31 + 384:3]  # the middle photo pixel of each block alone
    cut = view.cut(photo).astype(np.float64)
    assert np.abs(cut - area).max() <= 1.0
    # One sampled point a block differs from the mean by 2.3 levels RMS on this frame (hair, lashes, earrings):
    # enough for the first check to tell an averaged cut from a sampled one.
    assert np.sqrt(np.mean((sampled - area.astype(np.float64)) ** 2)) > 2.0


def test_an_open_mouth_reads_alike_however_the_photo_is_framed():
    # MediaPipe places a wide-open mouth's lower lip differently as the face fills more or less of the
    # frame; the source, read in several views, moves less than one reading does.
    single, views = [], []
    with LandmarkDetector(video=False, max_faces=4) as detector:
        for name in ("o_mouth.jpg", "mouth_open.jpg"):
            rgb = load_rgb(face_file("images", name))
            for pad in (0.1, 0.2):
                border = round(pad * rgb.shape[0])
                framed = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_REPLICATE)
                single.append(abs(fr.mouth_openness(detector.detect(rgb).points)
                                  - fr.mouth_openness(detector.detect(framed).points)))
                views.append(abs(fr.mouth_openness(read_photo_face(detector, rgb).points)
                                 - fr.mouth_openness(read_photo_face(detector, framed).points)))
    assert max(single) > 0.05  # what one reading does: the opening moves by a sixth
    assert np.mean(views) < 0.6 * np.mean(single)


def test_crop_frames_the_face_the_same_whatever_the_photo_size():
    rgb = load_rgb(face_file("images", "glasses_dim.jpg"))
    big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 2, rgb.shape[0] * 2), Image.BICUBIC))
    small, large = prepare_source(rgb), prepare_source(big)
    assert large.transform.scale == pytest.approx(small.transform.scale / 2, rel=0.02)
    assert np.abs(large.points[:, :2] - small.points[:, :2]).mean() < 1.0  # crop pixels
    assert face_crop_transform(small.points, 512).size == 512


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "P", "webp", "exif"])
def test_image_formats_load_as_rgb8(tmp_path, mode):
    rgb = load_rgb(face_file("images", "glasses_dim.jpg"))
    im = Image.fromarray(rgb)
    path = tmp_path / "face.png"
    if mode == "RGBA":
        im.convert("RGBA").save(path)
    elif mode == "L":
        im.convert("L").save(path)
    elif mode == "I;16":
        Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(path)
    elif mode == "P":
        im.quantize(256).save(path)
    elif mode == "webp":
        path = tmp_path / "face.webp"
        im.save(path, quality=90)
    else:  # stored on its side with EXIF orientation 6 (rotate 90 degrees clockwise to view)
        path = tmp_path / "face.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        im.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    out = load_rgb(path)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == rgb.shape[:2]  # EXIF-rotated image comes back upright
    if mode in ("L", "I;16"):
        assert np.abs(out.astype(int) - np.asarray(im.convert("L"))[..., None]).max() <= 1
    else:
        assert np.abs(out.astype(float) - rgb).mean() < 8
    src = prepare_source(path)
    assert src.points.shape == (478, 3)


def test_missing_and_corrupt_images_say_what_to_do(tmp_path):
    with pytest.raises(LivefakeError, match="does not exist"):
        load_rgb(tmp_path / "nope.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(LivefakeError, match="not an image"):
        load_rgb(text)
    data = face_file("images", "glasses_dim.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(LivefakeError, match="truncated or corrupt"):
        load_rgb(cut)


def test_no_face_and_cut_face_are_refused(tmp_path):
    blank = np.full((300, 300, 3), 200, np.uint8)
    with pytest.raises(NoFaceError, match="no face found"):
        prepare_source(blank, name="blank")
    rgb = load_rgb(face_file("images", "o_mouth.jpg"))
    with LandmarkDetector(video=False) as detector:
        pts = detector.detect(rgb).points
    half = rgb[:, : int(pts[1, 0])]  # cut through the nose
    with pytest.raises(NoFaceError, match="cut by the image edge|no face found"):
        prepare_source(np.ascontiguousarray(half), name="half")


@pytest.mark.parametrize(("name", "size"), [("astronaut.png", (1280, 720)), ("roll_hand.jpg", (1280, 720)),
                                             ("glasses_dim.jpg", (641, 361))])
def test_output_size_is_cut_around_the_face(name, size):
    """A 16:9 output from a square or portrait photo keeps the whole face (a centre cut would not)."""
    src = prepare_source(face_file("images", name), output_size=size)
    assert src.photo.shape == (size[1] - size[1] % 2, size[0] - size[0] % 2, 3)
    with LandmarkDetector(video=False) as detector:
        face = detector.detect(src.photo)
    assert face is not None and face.outside_fraction() == 0.0
