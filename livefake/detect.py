"""``livefake detect FILE``: is livefake's watermark in this image or video, how sure, and what it says.

A video is read in 1-second windows: each window's frames are averaged (the mark is the same in every
frame, the codec's noise is not) and searched over every shift and scale; each frame is then scored at
its window's scale. The whole file is the average of all its frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livefake.errors import LivefakeError
from livefake.watermark import Payload, Reading, canonical_residual, read_mark

ALPHA = 1e-4  # a window, frame or file is called marked when its p-value is at most this
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class WindowReading:
    start_s: float
    end_s: float
    frames: int
    reading: Reading


@dataclass(frozen=True)
class DetectReport:
    """The verdict for a file: the whole file's reading, its windows' and frames' (one each for an image),
    and the file's own metadata tag naming livefake, if any."""

    path: Path
    whole: Reading
    windows: list[WindowReading]
    frames: list[Reading]
    tag: str | None

    @property
    def marked(self) -> bool:
        return self.whole.marked(ALPHA)

    @property
    def payload(self) -> Payload | None:
        return self.whole.payload

    def summary(self) -> str:
        verdict = "livefake watermark FOUND" if self.marked else "no livefake watermark found"
        lines = [f"{self.path}: {verdict} (p = {self.whole.p_value:.1e} that an unmarked file scores this high; "
                 f"{len(self.frames)} frame{'s' * (len(self.frames) != 1)})"]
        if self.marked:
            lines.append(f"  payload: {self.payload}" if self.payload is not None
                         else "  payload: unreadable (too damaged); the mark itself is there")
        if self.windows:
            hits = sum(w.reading.marked(ALPHA) for w in self.windows)
            lines.append(f"  1-second windows marked: {hits} of {len(self.windows)}")
        if len(self.frames) > 1:
            hits = sum(f.marked(ALPHA) for f in self.frames)
            lines.append(f"  single frames marked: {hits} of {len(self.frames)}")
        if self.tag:
            lines.append(f"  file tag: {self.tag}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        def row(r: Reading) -> dict[str, object]:
            return {"p_value": r.p_value, "z": r.z, "chi2": r.chi2, "marked": r.marked(ALPHA), "scale": r.scale,
                    "payload": None if r.payload is None else str(r.payload)}

        return {"path": str(self.path), "marked": self.marked, "alpha": ALPHA, "whole": row(self.whole),
                "payload": None if self.payload is None else str(self.payload), "tag": self.tag,
                "windows": [dict(row(w.reading), start_s=w.start_s, end_s=w.end_s, frames=w.frames)
                            for w in self.windows],
                "frames": [row(f) for f in self.frames]}


def _livefake_tag(tags: dict[str, str]) -> str | None:
    found = [v for v in tags.values() if "livefake" in v.lower()]
    return found[0] if found else None


def detect_image(path: Path) -> DetectReport:
    from livefake.image_io import load_rgb

    reading = read_mark(canonical_residual(load_rgb(path)))
    return DetectReport(path, reading, [], [reading], None)


def detect_video(path: Path, window_s: float = 1.0, max_frames: int | None = None) -> DetectReport:
    from livefake.video_io import VideoReader

    windows: list[WindowReading] = []
    frames: list[Reading] = []
    total: np.ndarray | None = None
    count = 0
    pending: list[np.ndarray] = []
    start = 0.0

    def close_window(end_s: float) -> None:
        nonlocal pending
        if not pending:
            return
        reading = read_mark(np.mean(pending, axis=0))
        windows.append(WindowReading(start, end_s, len(pending), reading))
        frames.extend(read_mark(r, scales=np.array([reading.scale])) for r in pending)
        pending = []

    with VideoReader(path, max_frames=max_frames) as reader:
        tag = _livefake_tag(reader.info.tags)
        for frame in reader:
            if pending and frame.time_s >= start + window_s:
                close_window(frame.time_s)
                start = frame.time_s
            residual = canonical_residual(frame.rgb)
            if total is not None and total.shape != residual.shape:
                raise LivefakeError(f"the frames of '{path}' change size; cut the file where they do, check each part")
            total = residual.copy() if total is None else total + residual
            count += 1
            pending.append(residual)
        close_window(start + window_s)
    if total is None:
        raise LivefakeError(f"no frame could be decoded from '{path}'; check the file")
    return DetectReport(path, read_mark(total / count), windows, frames, tag)


def detect_file(path: str | Path, window_s: float = 1.0, max_frames: int | None = None) -> DetectReport:
    """Detect the mark in an image or a video file."""
    path = Path(path)
    if not path.is_file():
        raise LivefakeError(f"cannot read '{path}': there is no such file; check the path")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return detect_image(path)
    return detect_video(path, window_s, max_frames)


def write_json(report: DetectReport, out: Path) -> None:
    out.write_text(json.dumps(report.to_json(), indent=1))
