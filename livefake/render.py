"""Offline jobs on the shared per-frame path: ``render`` (photo + driving video) and ``demo`` (built-in)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from livefake.errors import LivefakeError
from livefake.gil import quick_handoffs
from livefake.prefetch import prefetch
from livefake.provenance import file_tags
from livefake.reenactor import FramePlan, FrameResult, ReenactConfig, Reenactor
from livefake.scripted_motion import ScriptedDriver
from livefake.source import PreparedSource, default_face, prepare_source
from livefake.video_io import VideoFrame, VideoReader, VideoWriter


@dataclass(frozen=True)
class RenderOptions:
    """``crop_size``: generator resolution (256 or 512); ``output_size``: (width, height) of the output
    frames, default the source photo's; ``max_frames``: stop early (tests, previews)."""

    crop_size: int = 256
    output_size: tuple[int, int] | None = None
    max_frames: int | None = None
    progress: bool = True
    crf: int = 18
    reenact: ReenactConfig = field(default_factory=ReenactConfig)

    def __post_init__(self) -> None:
        if self.crop_size not in (256, 512):
            raise ValueError(f"crop_size must be 256 or 512, got {self.crop_size}")
        if self.output_size is not None and min(self.output_size) < 16:
            raise ValueError(f"output_size must be at least 16x16, got {self.output_size}")


@dataclass(frozen=True)
class RenderReport:
    """What a run made: frames written, frames whose driver face was found, wall time, stage times (ms)."""

    output: Path
    frames: int
    faces_found: int
    seconds: float
    stage_ms: dict[str, float]

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def _write_all(
    results: Iterator[tuple[float, FrameResult]], writer: VideoWriter, total: int | None, progress: bool,
    output: Path,
) -> RenderReport:
    start = time.perf_counter()
    frames = faces = 0
    stage_ms: dict[str, float] = {}
    for t, result in tqdm(results, total=total, disable=not progress, unit="frame", desc="livefake"):
        writer.write(result.frame, t)
        frames += 1
        faces += result.face_found
        for name, ms in result.timings_ms.items():
            stage_ms[name] = stage_ms.get(name, 0.0) + ms
    writer.close()
    seconds = time.perf_counter() - start
    return RenderReport(output, frames, faces, seconds, {k: v / max(frames, 1) for k, v in stage_ms.items()})


def render_video(
    source: str | Path | PreparedSource, driving: str | Path, output: str | Path, options: RenderOptions
) -> RenderReport:
    """Reenact ``source`` with the motion of ``driving`` into the H.264 MP4 ``output``, with its audio."""
    output = Path(output)
    inputs = [Path(driving)] + ([] if isinstance(source, PreparedSource) else [Path(source)])
    if any(output.resolve() == p.resolve() for p in inputs):
        raise LivefakeError(f"the output '{output}' is one of the inputs; choose another output file name")
    prepared = source if isinstance(source, PreparedSource) else prepare_source(
        source, crop_size=options.crop_size, output_size=options.output_size)
    h, w = prepared.photo.shape[:2]
    with VideoReader(driving, max_frames=options.max_frames) as reader:
        total = reader.info.frame_count
        if options.max_frames is not None:
            total = min(total or options.max_frames, options.max_frames)
        with Reenactor(prepared, options.reenact) as reenactor, VideoWriter(
            output, w, h, reader.info.fps, audio_from=driving, crf=options.crf,
            metadata=file_tags("face reenactment"),
        ) as writer:
            # Landmarks, retargeting and warp geometry run one stage ahead in a worker thread; the
            # generator and paste-back in this one (MediaPipe, numpy, torch and OpenCV release the GIL).
            # closing() stops the worker before the reenactor and reader close, even on an error.
            def plan(frame: VideoFrame) -> FramePlan:
                return reenactor.plan_frame(frame.rgb, frame.time_s)

            with quick_handoffs(), contextlib.closing(prefetch(reader, plan, name="livefake-plan")) as planned:
                results = ((f.time_s, reenactor.render(p)) for f, p in planned)
                report = _write_all(results, writer, total, options.progress, output)
    if report.faces_found == 0:
        output.unlink(missing_ok=True)
        raise LivefakeError(
            f"no face found in any frame of '{driving}'; use a clip where one face is clearly visible"
        )
    return report


def render_demo(output: str | Path, options: RenderOptions, *, source: str | Path | None = None,
                seconds: float = 8.0) -> RenderReport:
    """The built-in face (or ``source``) driven by the built-in script, written to ``output``."""
    image: str | Path | np.ndarray = source if source is not None else default_face()
    prepared = prepare_source(image, crop_size=options.crop_size, output_size=options.output_size,
                              name=None if source is not None else "built-in face")
    h, w = prepared.photo.shape[:2]
    driver = ScriptedDriver(prepared.points, prepared.crop.shape[1], prepared.crop.shape[0], seconds=seconds)
    steps = itertools.islice(driver, options.max_frames)
    with Reenactor(prepared, options.reenact) as reenactor, VideoWriter(
        output, w, h, Fraction(driver.fps),
        metadata=file_tags("face reenactment demo"),
    ) as writer:
        results = ((t, reenactor.animate(face, t)) for t, face in steps)
        total = min(len(driver), options.max_frames or len(driver))
        return _write_all(results, writer, total, options.progress, Path(output))
