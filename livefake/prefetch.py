"""Run one stage ahead of the caller in a worker thread, in order, through a bounded queue.

For offline jobs (``render``), where every frame counts: nothing is dropped, and the queue bound keeps
memory flat. The live app's latest-frame-wins queues are a different policy and live with it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

_END = object()


def prefetch(items: Iterable[In], stage: Callable[[In], Out], *, depth: int = 4,
             name: str = "livefake-prefetch") -> Iterator[tuple[In, Out]]:
    """Yield ``(item, stage(item))`` in order while the worker computes the next ones.

    An exception in the worker (or in ``items``) is raised here, in the caller's thread. Stopping the
    iteration early stops the worker.
    """
    results: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(obj: object) -> bool:
        while not stop.is_set():
            try:
                results.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, stage(item))):
                    return
        except BaseException as err:  # handed to the caller, who re-raises it
            put(err)
            return
        put(_END)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while (got := results.get()) is not _END:
            if isinstance(got, BaseException):
                raise got
            yield got  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
