"""Video reading and writing on the real clips of ../shared/faces (skipped when that folder is absent)."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from livefake.errors import LivefakeError
from livefake.video_io import VideoReader, VideoWriter

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "videos"


def clip(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"shared test clip {path} not found (../shared/faces sits beside the checkout in CI)")
    return path


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "livefake-decode"]


def assert_one_line_error(err: pytest.ExceptionInfo[LivefakeError], *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot ")
    assert all(word in message for word in words), message


def audio_seconds(path: Path) -> float:
    """Length of the decoded audio of ``path`` in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames) / frames[0].sample_rate


def audio_samples(path: Path, start_s: float, seconds: float = 0.5) -> np.ndarray:
    """The first channel of the decoded audio of ``path`` from ``start_s`` on, sample-exact."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    rate, first = frames[0].sample_rate, round((start_s - frames[0].time) * frames[0].sample_rate)
    return np.concatenate([f.to_ndarray()[0] for f in frames])[first : first + round(seconds * rate)]


def test_reads_mouth_open_frames_with_size_count_and_30_fps_times():
    with VideoReader(clip("mouth_open.mp4"), max_frames=60) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (480, 480, Fraction(30))
        assert reader.info.frame_count == 216 and reader.info.has_audio
        assert reader.info.duration_s == pytest.approx(7.2, abs=0.05)
        frames = list(reader)
    assert [f.index for f in frames] == list(range(60))
    assert all(f.rgb.shape == (480, 480, 3) and f.rgb.dtype == np.uint8 and f.rgb.flags.c_contiguous for f in frames)
    times = np.array([f.time_s for f in frames])
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, np.arange(60) / 30, atol=1e-6)
    assert 40 < frames[30].rgb.mean() < 220  # a real picture, not a blank frame


def test_iterating_twice_gives_the_same_frames():
    with VideoReader(clip("mouth_open.mp4"), max_frames=5) as reader:
        first, second = [f.rgb for f in reader], [f.rgb for f in reader]
    assert len(first) == len(second) == 5 and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_round_trip_with_audio_keeps_size_rate_pixels_and_sync(tmp_path):
    talking = clip("talking.mp4")
    with VideoReader(talking, max_frames=75) as reader:
        frames = list(reader)[30:]  # start 1 s in, so the audio has to be taken from there
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 512, 512, Fraction(30), audio_from=talking, audio_start_s=frames[0].time_s,
                     metadata={"comment": "made with livefake test"}) as writer:
        for frame in frames:
            writer.write(frame.rgb, frame.time_s)
    with VideoReader(out) as reader:
        info, back = reader.info, list(reader)
    assert (len(back), info.width, info.height, info.fps, info.has_audio) == (45, 512, 512, Fraction(30), True)
    assert info.duration_s == pytest.approx(1.5, abs=1e-3)
    assert audio_seconds(out) == pytest.approx(info.duration_s, abs=0.1)
    diffs = [np.abs(a.rgb.astype(np.int16) - b.rgb).mean() for a, b in zip(back, frames)]
    assert max(diffs) < 4, diffs
    with av.open(str(out)) as container:
        assert container.metadata.get("comment") == "made with livefake test"
    copied, source = audio_samples(out, 0.0), audio_samples(talking, frames[0].time_s)  # AAC packets are copied
    assert np.abs(source).mean() > 0.01 and np.abs(copied - source).mean() < 1e-3


def test_audio_in_another_codec_is_transcoded_to_aac_in_sync(tmp_path):
    talking = clip("talking.mp4")
    wav = tmp_path / "speech.wav"  # PCM, which MP4 does not take as it is
    with av.open(str(talking)) as source, av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=44100, layout="mono")
        for frame in source.decode(audio=0):
            if frame.time > 2.0:
                break
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with VideoReader(talking, max_frames=30) as reader:
        frames = [f.rgb for f in reader]
    with VideoWriter(tmp_path / "out.mp4", 512, 512, Fraction(30), audio_from=wav, audio_start_s=0.5) as writer:
        for rgb in frames:
            writer.write(rgb)
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    assert audio_seconds(tmp_path / "out.mp4") == pytest.approx(1.0, abs=0.1)
    encoded, source = audio_samples(tmp_path / "out.mp4", 0.0), audio_samples(wav, 0.5) / 32768
    assert np.abs(source).mean() > 0.01 and np.abs(encoded - source).mean() < 0.3 * np.abs(source).mean()


def test_variable_frame_rate_times_survive_a_round_trip(tmp_path):
    times = [0.0, 0.033, 0.1, 0.12, 0.2, 0.21, 0.35, 0.4, 0.41, 0.6]
    with VideoWriter(tmp_path / "vfr.mp4", 64, 48, Fraction(30)) as writer:
        for i, t in enumerate(times):
            writer.write(np.full((48, 64, 3), 20 * i, np.uint8), t)
    with VideoReader(tmp_path / "vfr.mp4") as reader:
        back = [f.time_s for f in reader]
    np.testing.assert_allclose(back, times, atol=1e-3)


def test_a_file_cut_after_its_index_ends_early_without_error(tmp_path):
    with VideoReader(clip("talking.mp4"), max_frames=60) as reader:
        frames = [f.rgb for f in reader]
    written = tmp_path / "faststart.mp4"  # the writer puts the index first, so a cut keeps it
    with VideoWriter(written, 512, 512, Fraction(30)) as writer:
        for rgb in frames:
            writer.write(rgb)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(written.read_bytes()[: written.stat().st_size // 2])
    with VideoReader(cut) as reader:
        assert reader.info.frame_count == 60
        assert 5 < len(list(reader)) < 60


def test_missing_file_and_text_file_give_one_line_errors(tmp_path):
    with pytest.raises(LivefakeError) as err:
        VideoReader(tmp_path / "nowhere.mp4")
    assert_one_line_error(err, "nowhere.mp4", "no such file", "check the path")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(LivefakeError) as err:
        VideoReader(text)
    assert_one_line_error(err, "notes.mp4", "not a video", "pick another clip")


def test_a_clip_truncated_to_30_percent_fails_cleanly_or_ends_early(tmp_path):
    data = clip("mouth_open.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 3 // 10])
    try:
        with VideoReader(truncated) as reader:
            count = len(list(reader))
    except LivefakeError as exc:
        assert "\n" not in str(exc) and "truncated" in str(exc)
    else:
        assert count < 216


def test_writer_rejects_bad_frames_sizes_and_folders(tmp_path):
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 63, 48, Fraction(30))
    with pytest.raises(LivefakeError) as err:
        VideoWriter(tmp_path / "missing" / "out.mp4", 64, 48, Fraction(30))
    assert_one_line_error(err, "does not exist", "create it")
    with VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(30)) as writer:
        with pytest.raises(ValueError, match=r"expected \(48, 64, 3\) uint8, got \(64, 48, 3\) uint8"):
            writer.write(np.zeros((64, 48, 3), np.uint8))
        with pytest.raises(ValueError, match="float32"):
            writer.write(np.zeros((48, 64, 3), np.float32))
    assert not (tmp_path / "out.mp4").exists()  # no frame was written, so no file is left


def test_breaking_out_early_then_closing_leaves_no_decoder_thread():
    reader = VideoReader(clip("talking.mp4"))
    for frame in reader:
        if frame.index == 2:
            break
    assert not decoder_threads()  # leaving the loop closes its generator, which stops the thread
    kept = iter(reader)  # an iterator that is left suspended while its queue fills up
    next(kept)
    assert decoder_threads()
    reader.close()
    reader.close()
    assert not decoder_threads()


def test_phone_clip_with_display_rotation_comes_upright(tmp_path):
    """A clip stored on its side with a 90-degree display rotation (as phones record) reads upright."""
    from livefake.landmarks import LandmarkDetector

    with VideoReader(clip("talking.mp4"), max_frames=5) as reader:
        frames = [f.rgb for f in reader]
    path = tmp_path / "phone.mp4"
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 512, 512, "yuv420p"
    for rgb in frames:
        side = np.ascontiguousarray(np.rot90(rgb, -1))  # stored turned clockwise
        for packet in stream.encode(av.VideoFrame.from_ndarray(side, format="rgb24")):
            out.mux(packet)
    stream.set_display_rotation(90)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    with VideoReader(path) as reader:
        got = [f.rgb for f in reader]
    assert len(got) == len(frames)
    assert np.abs(got[0].astype(float) - frames[0]).mean() < 6  # upright again, up to the codec
    with LandmarkDetector(video=False) as detector:
        face = detector.detect(got[0])
    assert face.points[33, 1] < face.points[152, 1]  # eyes above the chin
