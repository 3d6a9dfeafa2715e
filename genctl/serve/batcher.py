"""Dynamic batching: many concurrent requests → one sampler loop, in one worker thread.

Requests wait in a bounded queue. The worker takes the oldest one, then waits until the queue
holds ``max_batch`` rows or ``max_wait_ms`` has passed since that request arrived (Triton's
``max_queue_delay``), and runs everything it took through ``Generator.generate_many``: requests
with any mix of conditions, n, seeds and per-row controls share one backend call per step, and
each keeps its own noise, so batching never changes a result. A full queue refuses at once
(``QueueFull`` → HTTP 503 with Retry-After) instead of letting sockets hang; a request whose
caller gave up (timeout) is dropped before it costs a backend call.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from genctl.runtime.generator import Generator
from genctl.runtime.samplers.base import Request, Samples


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already; the caller should retry later."""


@dataclass
class _Item:
    request: Request
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What one batch did, for metrics: requests, rows and seconds in the sampler."""

    requests: int
    rows: int
    seconds: float


class Batcher:
    """A bounded request queue drained by one worker thread into ``Generator.generate_many``.

    ``submit`` is a coroutine for the event loop; the generator only ever runs in the worker
    thread, so backends need not be thread-safe. ``on_batch`` is called after every batch.
    """

    def __init__(self, gen: Generator, *, max_batch: int = 64, max_wait_ms: float = 5.0, max_queue: int = 256,
                 on_batch: Callable[[BatchStats], None] | None = None):
        self.gen, self.max_batch, self.max_wait = gen, max_batch, max_wait_ms / 1000.0
        self.max_queue, self.on_batch = max_queue, on_batch
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="genctl-batcher", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker; requests still queued are cancelled."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        for item in self._queue:
            item.future.cancel()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch; given-up ones not counted)."""
        return sum(not i.future.cancelled() for i in list(self._queue))

    def enqueue(self, request: Request) -> Future:
        """Queue ``request``; its future resolves to ``Samples``. ``QueueFull`` past ``max_queue``."""
        item = _Item(request)
        with self._cond:
            self._drop_cancelled()
            if self._stopped or len(self._queue) >= self.max_queue:
                raise QueueFull(len(self._queue))
            self._queue.append(item)
            self._cond.notify_all()
        return item.future

    async def submit(self, request: Request, timeout_s: float) -> Samples:
        """Queue ``request`` and await its samples; ``asyncio.TimeoutError`` after ``timeout_s``."""
        future = self.enqueue(request)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        finally:
            if not future.done():
                future.cancel()  # the worker skips it
                with self._cond:
                    self._cond.notify_all()

    def _drop_cancelled(self) -> None:
        if any(i.future.cancelled() for i in self._queue):
            self._queue = deque(i for i in self._queue if not i.future.cancelled())

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[_Item] | None:
        """Wait for a full batch or the oldest request's deadline; ``None`` once stopped."""
        with self._cond:
            while True:
                self._drop_cancelled()
                if self._stopped:
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                left = self._queue[0].arrived + self.max_wait - time.monotonic()
                if sum(i.request.total for i in self._queue) >= self.max_batch or left <= 0:
                    return self._take()
                self._cond.wait(timeout=left)

    def _take(self) -> list[_Item]:
        """Oldest first, up to ``max_batch`` rows (a request larger than that runs alone)."""
        batch, rows = [], 0
        while self._queue and (not batch or rows + self._queue[0].request.total <= self.max_batch):
            item = self._queue.popleft()
            if item.future.set_running_or_notify_cancel():
                batch.append(item)
                rows += item.request.total
        return batch

    def _run(self, batch: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            results = self.gen.generate_many([i.request for i in batch])
        except Exception as exc:  # noqa: BLE001  (every waiting caller must hear of it, then the worker goes on)
            for item in batch:
                item.future.set_exception(exc)
            return
        for item, samples in zip(batch, results):
            item.future.set_result(samples)
        if self.on_batch:
            self.on_batch(BatchStats(len(batch), sum(i.request.total for i in batch), time.perf_counter() - start))
