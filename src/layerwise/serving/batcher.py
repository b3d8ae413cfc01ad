"""Micro-batching: concurrent requests for one model coalesced into one forward pass.

Requests wait in a bounded queue (full: :class:`QueueFull`, which the app answers 503 with
Retry-After at once, never by waiting). One worker takes the oldest request, then keeps
taking while the batch has fewer than ``max_batch`` rows: waiting for more until
``max_wait`` has passed, and after that taking only what is already queued (so with
``max_wait`` 0 a batch is whatever queued up while the last one ran). With
``max_queue_wait``, a request that has waited longer than that in the queue is answered
:class:`QueueFull` when its turn comes instead of being run late (load shedding: under
overload the answered requests then keep their latency, and the late ones are told to retry
at once rather than after their caller's patience ran out). A request that would overflow
the batch waits for the next one, so no forward pass ever holds more than ``max_batch``
rows (a single request with more rows runs in chunks of ``max_batch``). Inference runs on
one thread of its own, off the event loop. A request whose caller gave up (a timeout) is
dropped before it runs.

``prepare`` (optional) turns a request's raw rows into what ``run`` reads — checking and
decoding them — on that same thread, one request at a time: a request that fails it gets
its own error and the rest of the batch runs. Doing it there, not in a thread per request,
costs one hand-over between threads per batch instead of one per request (each one waits
for the GIL behind the event loop). With ``prepare`` a job's future holds ``(prepared rows,
predictions)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from layerwise.errors import LayerwiseError

Rows = list[dict[str, Any]]


class QueueFull(Exception):
    """The model's queue is full; ``retry_after``: seconds it should take to drain."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("queue full")
        self.retry_after = retry_after


@dataclass
class _Job:
    rows: Rows
    future: asyncio.Future[Rows] = field(repr=False)
    since: float = field(default_factory=time.monotonic)  # when it was queued


class MicroBatcher:
    """A queue and one worker per model; ``run(rows, batch_size)`` predicts rows."""

    def __init__(self, run: Callable[[Rows, int], Rows], *, max_batch: int, max_wait: float,
                 queue_size: int, on_batch: Callable[[int, float], None] | None = None,
                 prepare: Callable[[Any], Rows] | None = None,
                 max_queue_wait: float | None = None) -> None:
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.max_queue_wait = max_queue_wait
        self.shed = 0  # requests answered QueueFull after waiting past max_queue_wait
        self.prepare = prepare
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(queue_size)
        self.on_batch = on_batch
        self.busy = False
        self._held: _Job | None = None  # taken from the queue, waits for the next batch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="layerwise-infer")
        self._worker: asyncio.Task[None] | None = None
        self._batch_seconds = 0.01  # running mean, for Retry-After

    @property
    def depth(self) -> int:
        return self.queue.qsize() + (self._held is not None)

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._loop())

    def admit(self, rows: int = 1) -> None:
        """Raise :class:`QueueFull` now if a request could not be queued."""
        if self.queue.full():
            raise QueueFull(self._drain_estimate(rows))

    def _drain_estimate(self, rows: int) -> float:
        per_batch = max(1.0, self.max_batch / max(1, rows))
        return self.depth / per_batch * self._batch_seconds

    def submit(self, rows: Rows) -> asyncio.Future[Any]:
        """Queue rows; the future holds their predictions in order."""
        fut: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Job(rows, fut))
        except asyncio.QueueFull:
            raise QueueFull(self._drain_estimate(len(rows))) from None
        return fut

    async def _next(self, timeout: float | None) -> _Job | None:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if not self.queue.empty():  # no waiting (and no timer task) for what is there
            return self.queue.get_nowait()
        if timeout is not None and timeout <= 0:
            return None
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), max(0.0, timeout))
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Job]:
        """The next batch: at least one live request, at most ``max_batch`` rows."""
        jobs: list[_Job] = []
        rows = 0
        deadline = None
        while True:
            if rows >= self.max_batch:
                return jobs
            wait = None if not jobs else deadline - time.monotonic()  # type: ignore[operator]
            if wait is not None and wait <= 0:  # past max_wait: what is queued, no waiting
                if self._held is None and self.queue.empty():
                    return jobs
                wait = 0.0
            job = await self._next(wait)
            if job is None:
                return jobs
            if job.future.done():  # its caller timed out or left
                continue
            if self._late(job):
                continue
            if jobs and rows + len(job.rows) > self.max_batch:
                self._held = job
                return jobs
            jobs.append(job)
            rows += len(job.rows)
            if deadline is None:
                deadline = time.monotonic() + self.max_wait

    def _late(self, job: _Job) -> bool:
        """Answer ``job`` QueueFull if it waited past ``max_queue_wait`` (True)."""
        if self.max_queue_wait is None or time.monotonic() - job.since <= self.max_queue_wait:
            return False
        self.shed += 1
        job.future.set_exception(QueueFull(self._drain_estimate(len(job.rows))))
        return True

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            self.busy = True
            try:
                t0 = time.perf_counter()
                results = await loop.run_in_executor(self._pool, self._run_jobs, jobs)
                dt = time.perf_counter() - t0
                self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * dt
                if self.on_batch is not None:
                    self.on_batch(sum(len(j.rows) for j in jobs), dt)
                for job, result in zip(jobs, results, strict=True):
                    if job.future.done():
                        continue
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result((job.rows, result) if self.prepare else result)
            finally:
                self.busy = False

    def _run_jobs(self, jobs: list[_Job]) -> list[Rows | BaseException]:
        """Prepare each job's rows (a job that fails gets its error), then predict the
        rest together."""
        results: list[Rows | BaseException | None] = [None] * len(jobs)
        ready = []
        for i, job in enumerate(jobs):
            if self.prepare is not None:
                try:
                    job.rows = self.prepare(job.rows)
                except Exception as e:  # this request's bad input: its error alone
                    results[i] = e
                    continue
            ready.append(i)
        if ready:
            for i, got in zip(ready, self._predict([jobs[i] for i in ready]), strict=True):
                results[i] = got
        return [r for r in results if r is not None]

    def _predict(self, jobs: list[_Job]) -> list[Rows | BaseException]:
        """Predict every job's rows in one call; when that fails on bad data, each job
        alone, so one bad request cannot fail the others."""
        rows = [r for j in jobs for r in j.rows]
        try:
            out = self.run(rows, self.max_batch)
        except LayerwiseError as e:
            if len(jobs) == 1:
                return [e]
            return [r for j in jobs for r in self._predict([j])]
        except Exception as e:  # a model failure: answered 500 by the app, logged
            return [e] * len(jobs)
        results: list[Rows | BaseException] = []
        start = 0
        for j in jobs:
            results.append(out[start:start + len(j.rows)])
            start += len(j.rows)
        return results

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued request has run (True), or ``timeout`` passes."""
        end = time.monotonic() + timeout
        while (self.depth or self.busy) and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return not (self.depth or self.busy)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)
