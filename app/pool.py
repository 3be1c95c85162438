"""A bounded pool for the CPU-bound work of requests (reading files, planning, serialising).

The event loop never plans: it admits a request (or answers 503 when ``workers + queue``
requests are already admitted), hands the work to one of ``workers`` threads, and meanwhile
stays free for ``/healthz`` and other clients. Work reports progress through its ``Job``; a
client that goes away cancels the job, and work that checks its job stops early.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
from starlette.requests import Request

from eplb_core.errors import CancelledError

from .errors import BusyError, status_of

T = TypeVar("T")
logger = logging.getLogger("app")
DISCONNECT_POLL_SECONDS = 0.25


class Job:
    """One request's work as its thread sees it: progress to report, and whether to stop."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._listener: Callable[[int, int], object] | None = None

    def listen(self, listener: Callable[[int, int], object]) -> None:
        """Call ``listener(done, total)`` on each progress report (from the worker thread)."""
        self._listener = listener

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise ``CancelledError`` when the client no longer wants the result."""
        if self.cancelled:
            raise CancelledError("the client went away")

    def progress(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` steps (the core's progress callbacks); stops a
        cancelled job."""
        self.check()
        if self._listener is not None:
            self._listener(done, total)


class WorkPool:
    """``workers`` threads and room for ``queue`` more admitted requests."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0  # changed on the event loop only
        self._threads: ThreadPoolExecutor | None = None

    @property
    def _executor(self) -> ThreadPoolExecutor:
        """The threads, started on first use (and again after ``shutdown``)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="eplb-work"
            )
        return self._threads

    @contextmanager
    def admit(self) -> Iterator[Job]:
        """A slot for one request, held until the request is done; ``BusyError`` when none is
        left."""
        if self.admitted >= self.capacity:
            raise BusyError(self.admitted)
        self.admitted += 1
        try:
            yield Job()
        finally:
            self.admitted -= 1

    async def run(self, job: Job, work: Callable[[], T], request: Request | None = None) -> T:
        """``work()`` on a worker thread; cancels ``job`` when ``request``'s client goes away
        (the result is then dropped)."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        if request is None:
            return await future
        while True:
            done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return future.result()
            if not job.cancelled and await request.is_disconnected():
                job.cancel()

    async def stream(self, job: Job, work: Callable[[], bytes]) -> AsyncIterator[bytes]:
        """Run ``work()`` and yield NDJSON lines: ``{"progress": {"done", "total"}}`` as it
        reports, then ``{"result": ...}`` (its bytes, already JSON) or ``{"error": {"status",
        "detail"}}``. Closing the stream (the client went away) cancels the job."""
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        job.listen(lambda done, total: loop.call_soon_threadsafe(updates.put_nowait, (done, total)))
        future = loop.run_in_executor(self._executor, work)
        try:
            while not future.done():
                waiter = asyncio.ensure_future(updates.get())
                pending: list[asyncio.Future[Any]] = [future, waiter]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    done, total = waiter.result()
                    yield orjson.dumps({"progress": {"done": done, "total": total}}) + b"\n"
                else:
                    waiter.cancel()
            yield _last_line(future)
        finally:
            job.cancel()  # a no-op once the work is done
            if not future.done():
                await asyncio.wait({future})  # hold the slot while the thread still works

    def shutdown(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None


def _last_line(future: asyncio.Future[bytes]) -> bytes:
    """The stream's last line: the result, or the error that ended the work."""
    try:
        return b'{"result": ' + future.result() + b"}\n"
    except Exception as error:
        code, detail = status_of(error)
        if code == 500:
            logger.error("internal error in streamed work", exc_info=error)
        return orjson.dumps({"error": {"status": code, "detail": detail}}) + b"\n"
