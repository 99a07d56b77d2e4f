"""Live telemetry: per-stage service time and queue wait, end-to-end latency from capture to sink, output
frame rate and intervals, drops. Thread-safe; the preview overlay reads a live snapshot, ``--stats`` and
the latency benchmark write :meth:`Telemetry.summary` as JSON.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

STAGES = ("capture", "landmarks", "geometry", "generator", "composite", "output")


def percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    """count, mean and p50/p95/p99 of ``values`` (zeros when empty)."""
    if len(values) == 0:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"count": int(arr.size), "mean": float(arr.mean()), "p50": float(p50), "p95": float(p95),
            "p99": float(p99), "max": float(arr.max())}


class Telemetry:
    """Collects what the live pipeline does. Samples are kept for the whole run up to ``max_samples``
    per series (an hour at 30 fps), then the oldest go: memory stays bounded."""

    def __init__(self, max_samples: int = 108_000) -> None:
        self._lock = threading.Lock()
        self._max = max_samples
        self.service_ms: dict[str, deque[float]] = {s: deque(maxlen=max_samples) for s in STAGES}
        self.wait_ms: dict[str, deque[float]] = {s: deque(maxlen=max_samples) for s in STAGES}
        self.e2e_ms: deque[float] = deque(maxlen=max_samples)
        self.out_times: deque[float] = deque(maxlen=max_samples)
        self.recent_out: deque[float] = deque(maxlen=120)
        self.recent_e2e: deque[float] = deque(maxlen=60)
        self.captured = 0
        self.published = 0  # frames sent to the sinks, repeats included
        self.repeats = 0  # a sink's steady clock re-sent the last frame
        self.faces_lost = 0
        self.frame_errors = 0
        self.camera_reconnects = 0
        self.stamp_mismatches = 0
        self.audio_xruns = 0
        self.queue_drops: dict[str, int] = {}
        self.started = time.perf_counter()

    def stage(self, name: str, service_s: float, wait_s: float = 0.0) -> None:
        with self._lock:
            self.service_ms[name].append(service_s * 1000)
            self.wait_ms[name].append(wait_s * 1000)

    def frame_out(self, captured_at: float, now: float | None = None) -> None:
        """A new frame (not a repeat) reached the sinks; ``captured_at`` is its capture time."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            self.e2e_ms.append((now - captured_at) * 1000)
            self.recent_e2e.append((now - captured_at) * 1000)
            self.out_times.append(now)
            self.recent_out.append(now)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def live(self) -> dict[str, float]:
        """A snapshot for the overlay: output fps over the last seconds, recent latency, drops."""
        with self._lock:
            recent = list(self.recent_out)
            e2e = list(self.recent_e2e)
            drops = sum(self.queue_drops.values())
            captured = self.captured
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 and recent[-1] > recent[0] else 0.0
        return {"fps": fps, "e2e_ms": float(np.median(e2e)) if e2e else 0.0, "dropped": drops,
                "drop_rate": drops / max(captured, 1)}

    def summary(self) -> dict:
        """Everything, as plain JSON-able numbers."""
        with self._lock:
            out = np.asarray(self.out_times)
            intervals = np.diff(out) * 1000 if out.size > 1 else np.zeros(0)
            duration = float(out[-1] - out[0]) if out.size > 1 else 0.0
            drops = sum(self.queue_drops.values())
            interval_stats = percentiles(intervals)
            return {
                "seconds": time.perf_counter() - self.started,
                "frames_captured": self.captured,
                "frames_out": int(out.size),
                "fps_out": (out.size - 1) / duration if duration > 0 else 0.0,
                "dropped": drops,
                "drop_rate": drops / max(self.captured, 1),
                "queue_drops": dict(self.queue_drops),
                "repeats": self.repeats,
                "e2e_ms": percentiles(self.e2e_ms),
                "interval_ms": interval_stats,
                "jitter_ms": interval_stats["p99"] - interval_stats["p50"],
                "stages": {s: {"service_ms": percentiles(self.service_ms[s]), "wait_ms": percentiles(self.wait_ms[s])}
                           for s in STAGES if self.service_ms[s]},
                "faces_lost": self.faces_lost,
                "frame_errors": self.frame_errors,
                "camera_reconnects": self.camera_reconnects,
                "stamp_mismatches": self.stamp_mismatches,
                "audio_xruns": self.audio_xruns,
            }

    def write_json(self, path: Path, extra: dict | None = None) -> None:
        data = self.summary() | (extra or {})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))

    def summary_line(self) -> str:
        s = self.summary()
        e2e = s["e2e_ms"]
        return (f"{s['frames_out']} frames, {s['fps_out']:.1f} fps out, latency p50 {e2e['p50']:.0f} ms "
                f"p99 {e2e['p99']:.0f} ms (capture to output), {s['drop_rate'] * 100:.1f} % dropped")
