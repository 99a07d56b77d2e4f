"""How fast the stages' threads pass Python's interpreter lock (the GIL) to one another.

A thread that wants the lock while another runs Python waits until the holder calls into code that lets
go of it (OpenCV, torch, numpy on large arrays, MediaPipe's graph) or until CPython's switch interval,
5 ms by default, asks the holder to let go. A stage back from MediaPipe or from the encoder then sits up
to that long behind another stage's Python. A pure-Python loop in one thread held MediaPipe's frames in
another at 79 a second (5 ms interval) against 157 (1 ms). In ``render`` at 256 on 2 cores, frames timed
in alternating 40-frame blocks of one run came 1.4-8 % faster at 1 ms than at 5 (four runs), and 0.5 ms
gained no more.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

HANDOFF_S = 0.001

# The interval is one setting for the whole process: runs that overlap (a pipeline and a render in another
# thread) share one change, made by the first to start and undone by the last to end.
_lock = threading.Lock()
_runs = 0
_previous_s = 0.0


@contextlib.contextmanager
def quick_handoffs() -> Iterator[None]:
    """Within the block the running thread is asked to pass the lock on after ``HANDOFF_S`` seconds (or
    the interval already set, if shorter); the previous interval comes back when the last such block ends,
    on an error too."""
    global _runs, _previous_s
    with _lock:
        if _runs == 0:
            _previous_s = sys.getswitchinterval()
            sys.setswitchinterval(min(_previous_s, HANDOFF_S))
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                sys.setswitchinterval(_previous_s)
