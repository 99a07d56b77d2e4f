"""The queue between two live stages: bounded, and the newest frame wins.

A stage that falls behind never builds a backlog: putting into a full queue drops the oldest item and
counts it. A source that must not lose frames (a clip played unpaced, for a throughput measurement)
puts with ``block=True`` instead and waits for room. ``close()`` wakes every waiter, so a pipeline stops
at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestQueue(Generic[T]):
    """A queue of at most ``depth`` items where a put into a full queue drops the oldest."""

    def __init__(self, depth: int = 1, name: str = "") -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self.name = name
        self._items: deque[tuple[float, T]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T, block: bool = False) -> bool:
        """Add ``item``. Full: drop the oldest (``block=False``), or wait for room. False once closed."""
        with self._cond:
            if block:
                while len(self._items) >= self.depth and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            if len(self._items) >= self.depth:
                self._items.popleft()
                self.dropped += 1
            self._items.append((time.perf_counter(), item))
            self.put_count += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> tuple[T, float] | None:
        """The oldest item still queued and how long it waited (s); None on timeout or once closed and empty."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.1)
            put_at, item = self._items.popleft()
            self._cond.notify_all()
            return item, time.perf_counter() - put_at

    def get_latest(self) -> T | None:
        """The newest item without waiting (older ones are dropped and counted); None when empty."""
        with self._cond:
            if not self._items:
                return None
            self.dropped += len(self._items) - 1
            item = self._items[-1][1]
            self._items.clear()
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
