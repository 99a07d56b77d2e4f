"""``livefake detect FILE``: is livefake's watermark in this image or video, how sure, and what it says.

A video is read in 1-second windows: each window's frames are averaged (the mark is the same in every
frame, the codec's noise is not) and searched over every shift, scale and mirroring; each frame is then
scored at its window's scale, its p-value still counting every scale the window tried. The whole file is
the average of all its frames; it is called marked when that average is, or when its best window is
after a correction for the number of windows (a file where livefake's output is only a part).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from livefake.errors import LivefakeError
from livefake.watermark import ALPHA, SCALES, Payload, Reading, canonical_residual, read_mark

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
    def p_value(self) -> float:
        """The whole file's p-value: its average frame's, or its best window's times the number of windows."""
        best_window = min((w.reading.p_value for w in self.windows), default=1.0) * max(len(self.windows), 1)
        return min(self.whole.p_value, best_window, 1.0)

    @property
    def marked(self) -> bool:
        return self.p_value <= ALPHA

    @property
    def payload(self) -> Payload | None:
        """The payload read from the whole file, else the one most windows read; None when not marked."""
        if not self.marked:
            return None
        if self.whole.payload is not None:
            return self.whole.payload
        read = [w.reading.payload for w in self.windows if w.reading.payload is not None]
        return max(set(read), key=read.count) if read else None

    def summary(self) -> str:
        verdict = ("livefake watermark FOUND" if self.marked else
                   "no livefake watermark found (which does not show that the video is real)")
        p = f"{self.p_value:.1e}" if self.p_value > 1e-300 else "< 1e-300"
        lines = [f"{self.path}: {verdict}; p = {p}, the chance that an unmarked file scores this high "
                 f"({len(self.frames)} frame{'s' * (len(self.frames) != 1)})"]
        if self.marked:
            lines.append(f"  payload: {self.payload}" if self.payload is not None
                         else "  payload: unreadable (too damaged); the mark itself is there")
        if self.windows:
            hits = sum(w.reading.marked(ALPHA) for w in self.windows)
            lines.append(f"  1-second windows marked: {hits} of {len(self.windows)} "
                         f"(by chance at most {ALPHA * len(self.windows):.1g} expected)")
        if len(self.frames) > 1:
            hits = sum(f.marked(ALPHA) for f in self.frames)
            lines.append(f"  single frames marked: {hits} of {len(self.frames)} "
                         f"(by chance at most {ALPHA * len(self.frames):.1g} expected)")
        if self.tag:
            lines.append(f"  file tag: {self.tag}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        def row(r: Reading) -> dict[str, object]:
            return {"p_value": r.p_value, "z": r.z, "chi2": r.chi2, "marked": r.marked(ALPHA), "scale": r.scale,
                    "payload": None if r.payload is None else str(r.payload)}

        return {"path": str(self.path), "marked": self.marked, "p_value": self.p_value, "alpha": ALPHA,
                "whole": row(self.whole),
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
        view = (lambda r: np.ascontiguousarray(r[:, ::-1])) if reading.mirrored else (lambda r: r)
        frames.extend(read_mark(view(r), scales=np.array([reading.scale]), mirrored=False,
                                searched=2 * len(SCALES)) for r in pending)
        pending = []

    with VideoReader(path, max_frames=max_frames) as reader:
        tag = _livefake_tag(reader.info.tags)
        most = max(2, round(float(reader.info.fps) * window_s * 2))  # a window closes in time even if time stalls
        for frame in reader:
            if pending and not (start <= frame.time_s < start + window_s and len(pending) < most):
                close_window(frame.time_s)
                start = frame.time_s
            residual = canonical_residual(frame.rgb)
            if total is not None and total.shape != residual.shape:  # the stream changed resolution
                residual = cv2.resize(residual, (total.shape[1], total.shape[0]), interpolation=cv2.INTER_LINEAR)
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
    try:
        out.write_text(json.dumps(report.to_json(), indent=1))
    except OSError as err:
        raise LivefakeError(f"cannot write '{out}': {err.strerror or err}; check the folder") from None
