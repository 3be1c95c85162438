"""Serving the app with uvicorn, hardened against slow and numerous clients.

- A client must send its request headers within ``EPLB_HEADER_TIMEOUT`` seconds of
  connecting (uvicorn alone waits forever), and each part of a body within
  ``EPLB_BODY_TIMEOUT`` (``app.middleware.Guard``); idle keep-alive connections close after
  ``EPLB_KEEP_ALIVE_TIMEOUT``.
- Past ``EPLB_MAX_CONNECTIONS`` open connections a new one is closed at once, so file
  descriptors never run out; the soft descriptor limit is raised to the hard one.
- Running out of descriptors anyway logs one line a minute, not a traceback per refused
  accept.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import h11
import torch
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import Settings, get_settings

logger = logging.getLogger("app")
ACCEPT_ERROR_INTERVAL = 60.0


def guarded_protocol(settings: Settings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and a cap on open connections."""

    class GuardedH11Protocol(H11Protocol):
        headers_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > settings.max_connections:
                transport.abort()
                return
            self._await_headers()

        def handle_events(self) -> None:
            super().handle_events()
            if self.headers_deadline is not None and self.conn.their_state is not h11.IDLE:
                self.headers_deadline.cancel()  # the request's headers are complete
                self.headers_deadline = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_headers()  # the next request on this connection, if any

        def connection_lost(self, exc: Exception | None) -> None:
            if self.headers_deadline is not None:
                self.headers_deadline.cancel()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            if self.headers_deadline is not None:
                self.headers_deadline.cancel()
            self.headers_deadline = self.loop.call_later(
                settings.header_timeout, self._headers_late
            )

        def _headers_late(self) -> None:
            self.headers_deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log "out of file descriptors" on accept at most once a minute, without a traceback."""
    last = -ACCEPT_ERROR_INTERVAL

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last
        if "socket.accept() out of system resource" not in context.get("message", ""):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - last >= ACCEPT_ERROR_INTERVAL:
            last = now
            logger.warning(
                "cannot accept connections: out of file descriptors (%s)", context.get("exception")
            )

    loop.set_exception_handler(handle)


def raise_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logger.warning("could not raise the file descriptor limit from %d", soft)


def serve(settings: Settings) -> None:
    """Serve ``app.main:app`` on the settings' host and port until interrupted."""
    raise_descriptor_limit()
    # The workers plan side by side: more torch threads than cores make each wait for
    # threads descheduled by the others.
    torch.set_num_threads(settings.torch_threads)
    config = uvicorn.Config(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(settings),
        timeout_keep_alive=int(max(1, settings.keep_alive_timeout)),
        h11_max_incomplete_event_size=64 * 1024,
        log_level="info",
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        quiet_accept_errors(asyncio.get_running_loop())
        await server.serve()

    asyncio.run(run())


def main() -> None:
    serve(get_settings())
