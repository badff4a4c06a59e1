"""The studio's heavy work (decoding an upload, running a network, the explainer) on a few worker threads of its own.

One worker per core, 1 to 4: the pages (GET /, /api/runs) keep being answered by the server's own threads while the
workers are busy. A request waits in the queue until a worker is free; one whose client has gone meanwhile (the page
closed, a newer question asked) is dropped before it starts. Work that has started is not interrupted: the field
bounds (studio.guards) keep each piece to a few seconds at most. The workers are daemon threads; a stopping studio
waits for the piece they are running (`join`, bounded), because a process that exits while a thread is inside
torch's C++ code aborts ("terminate called without an active exception", exit status -6).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between two looks at whether a waiting request's client is still there


def default_workers() -> int:
    """One per core this process may use, 1 to 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class ClientGone(Exception):
    """The request's client disconnected while it waited in the queue: it was dropped, nobody reads an answer."""


class Stopping(Exception):
    """The studio is stopping (Ctrl-C): the request is answered at once, without waiting for its work."""


class Work:
    """A queue served by `workers` daemon threads. `await run(request, fn, *args)` gives fn(*args)'s result (or
    raises what it raised), or raises ClientGone when the client left before a worker took it."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self.dropped = 0  # requests dropped because their client had gone
        self.stopping = False  # set when the server is told to stop: waiting requests answer at once (Stopping)
        self._queue: queue.SimpleQueue[tuple[Future, Callable, tuple] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"convscope-work-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable, *args) -> Future:
        """fn(*args) queued; its Future can be cancelled until a worker takes it. Raises Stopping once closed."""
        if self._closed:
            raise Stopping
        future: Future = Future()
        self._queue.put((future, fn, args))
        return future

    async def run(self, request: Any, fn: Callable, *args) -> Any:
        """fn(*args) on a worker, awaited; `request` (starlette's) is watched while it waits in the queue. Raises
        ClientGone (dropped), Stopping (`stopping` was set: the answer is not waited for)."""
        if self.stopping:
            raise Stopping
        future = self.submit(fn, *args)
        wrapped = asyncio.wrap_future(future)
        try:
            while True:
                done, _ = await asyncio.wait({wrapped}, timeout=POLL)
                if done:
                    return wrapped.result()
                if self.stopping:
                    raise Stopping
                if not future.running() and await request.is_disconnected() and future.cancel():
                    self.dropped += 1
                    log.debug("dropped %s: its client has gone", getattr(fn, "__name__", fn))
                    raise ClientGone
        finally:  # not waited for any longer (answered, stopping, cancelled): what has not started never will, and
            if not wrapped.done():  # what has ends unheard (its result is not handed to a loop that may be closed)
                wrapped.cancel()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the request, which answers it
                future.set_exception(err)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Cancel what waits in the queue and let the workers end after their current piece (not waited for)."""
        self._closed = self.stopping = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)

    def join(self, seconds: float) -> bool:
        """Wait at most `seconds` for the workers to end (after `close`: their current piece, if any). Returns
        whether they all did."""
        deadline = time.monotonic() + seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)
