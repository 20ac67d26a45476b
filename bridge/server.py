"""The HTTP server around the app: header and idle timeouts, a cap on open connections, and
aiohttp's own protocol errors answered as JSON and logged sparingly.

aiohttp's server has a keep-alive timeout but no header timeout and no connection cap: a
connection that sends its headers a byte at a time, or never, is kept for as long as the
keep-alive allows, and enough of them use up the process's descriptors. These hooks sit on
aiohttp's RequestHandler (the per-connection protocol); they read a few of its attributes
(`_request_count`, `_request_in_progress`, `_messages`), pinned by tests/component/test_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .config import Listen
from .metrics import Metrics
from .responses import json_error

log = logging.getLogger("od_bridge.server")

FD_RESERVE = 64  # descriptors kept for the spool, AMQP, Open Dental calls, logs, the loop
PROBE_RESERVE = 16  # connections past the cap still served, so /healthz answers when it is hit
LOG_EVERY_S = 60.0  # at most one line per this many seconds for each kind of peer trouble


def descriptor_limit() -> int | None:
    """This process's soft limit on open descriptors (None where there is no such limit)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only (absent on Windows)
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int, limit: int | None) -> int:
    """The cap on open connections: as configured, but below the descriptor limit."""
    if limit is None:
        return configured
    return max(1, min(configured, limit - FD_RESERVE - PROBE_RESERVE))


class Sparse:
    """A log line at most every `every_s` seconds; the lines held back are counted in the next."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._next = 0.0
        self._held = 0

    def log(self, level: int, message: str, **extra: Any) -> None:
        """Log now if the last line is old enough, else count it."""
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        self._next = now + self.every_s
        log.log(level, message, extra={**extra, "suppressed": self._held})
        self._held = 0


class Guard:
    """What every connection of one server shares: limits, the open connections, metrics."""

    def __init__(self, listen: Listen, metrics: Metrics, limit: int | None = None) -> None:
        self.header_timeout_s = listen.header_timeout_s
        self.cap = connection_cap(listen.max_connections, limit or descriptor_limit())
        self.metrics = metrics
        self.open: dict[GuardedHandler, None] = {}  # insertion order: oldest first
        self.full = Sparse()
        self.protocol_errors = Sparse()
        metrics.connections_open.set_function(lambda: len(self.open))

    def opened(self, handler: GuardedHandler) -> bool:
        """Count a new connection; make room at the cap. False: close it right away."""
        self.open[handler] = None
        if len(self.open) <= self.cap:
            return True
        self.full.log(
            logging.WARNING,
            "connection limit reached; closing idle connections (listen.max_connections, "
            "descriptor limit)",
            limit=self.cap,
            open=len(self.open),
        )
        # Oldest idle connection first: an idle keep-alive or one still sending its headers.
        idle = next((h for h in self.open if h is not handler and h.idle), None)
        if idle is not None:
            self.closed(idle)
            idle.force_close()
            self.metrics.connections_closed.labels("limit").inc()
            return True
        if len(self.open) > self.cap + PROBE_RESERVE:
            self.closed(handler)
            self.metrics.connections_closed.labels("limit").inc()
            return False
        return True  # in the reserve: a probe (or a request) still gets its answer

    def closed(self, handler: GuardedHandler) -> None:
        """Forget a connection."""
        self.open.pop(handler, None)


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol with a header timeout and the connection cap."""

    def __init__(self, manager: web.Server, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timer: asyncio.TimerHandle | None = None
        self._requests_seen = 0
        self._between = False  # a request was answered; the next one's headers are not due yet

    @property
    def idle(self) -> bool:
        """True when no request is being read or handled (closing it loses nothing)."""
        return not self._request_in_progress and not self._messages

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count it, and give it header_timeout_s to send a request's headers."""
        super().connection_made(transport)
        if not self._guard.opened(self):
            self.force_close()
            return
        self._arm()

    def _arm(self) -> None:
        self._requests_seen = self._request_count
        self._header_timer = self._loop.call_later(self._guard.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._request_count == self._requests_seen and not self._request_in_progress:
            self._guard.metrics.connections_closed.labels("header_timeout").inc()
            log.debug("request headers did not arrive in time; connection closed")
            self.force_close()

    def data_received(self, data: bytes) -> None:
        """Stop the header clock once headers are in; start it on a next request's first byte."""
        super().data_received(data)
        if self._request_count != self._requests_seen:
            self._requests_seen = self._request_count
            self._disarm()
        elif self._between and data and self._header_timer is None:
            self._between = False
            self._arm()

    async def finish_response(self, request: BaseRequest, resp: Any, start_time: Any) -> Any:
        """After an answer, the next request's header clock starts with its first byte."""
        result = await super().finish_response(request, resp, start_time)
        self._between = True
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the connection."""
        self._disarm()
        self._guard.closed(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own errors (a malformed request line or header): JSON like every other
        answer, counted, and logged at most once a minute (they come in floods from scanners)."""
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already started; cannot send an error")
        self._guard.metrics.rejected.labels(str(status)).inc()
        self._guard.protocol_errors.log(
            logging.INFO,
            "malformed HTTP request refused",
            status=status,
            error=type(exc).__name__ if exc is not None else "-",
            client=request.remote or "-",
        )
        # aiohttp's message quotes the offending bytes: they may hold a key, so never echo them.
        response = json_error(status, HTTPStatus(status).phrase)
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's Server, making GuardedHandlers."""

    guard: Guard

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server guards its connections (see the module docstring)."""

    def __init__(self, app: web.Application, guard: Guard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        server.guard = self.guard  # type: ignore[attr-defined]
        return server


def runner(
    app: web.Application, listen: Listen, metrics: Metrics, shutdown_timeout: float
) -> GuardedRunner:
    """The runner for the bridge's app, with every limit of `listen` in force."""
    return GuardedRunner(
        app,
        Guard(listen, metrics),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=listen.keepalive_timeout_s,
        # No draining of a body that was not read after the answer: such a connection is
        # closed instead (a client that sent a body we refused, or one that cannot be decoded).
        lingering_time=0,
    )
