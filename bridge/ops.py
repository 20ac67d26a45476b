"""The operator's pages (/metrics, /status, /status.json), on the main or the admin listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import access, status, status_page
from .config import Config
from .health import Health
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .responses import json_error, method_not_allowed, not_found, plain
from .spool import Spool

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REFRESH_S = 10  # the status page reloads itself this often


@dataclass
class Ops:
    """What the pages read: metrics, office health, the outbox's state and the spool."""

    config: Config
    metrics: Metrics
    health: Health
    state: Callable[[], dict[str, Any]]  # /readyz's answer: ready, broker, spool
    spool: Spool | None = None
    collect: Callable[[], Awaitable[None]] | None = None  # refreshes gauges before a scrape

    async def snapshot(self) -> dict[str, Any]:
        """The status document (what /status.json answers)."""
        return await status.snapshot(self.config, self.health, self.state(), self.spool)

    async def metrics_page(self, _: web.Request) -> web.Response:
        """GET /metrics: the Prometheus exposition."""
        self.metrics.broker_up.set(1 if self.state()["broker"] == "connected" else 0)
        if self.collect is not None:
            await self.collect()
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def status_json(self, _: web.Request) -> web.Response:
        """GET /status.json: every office's health, for scripts and `od-bridge status`."""
        return web.json_response(await self.snapshot())

    async def status_html(self, _: web.Request) -> web.Response:
        """GET /status: the same as one self-contained, self-refreshing HTML page."""
        page = status_page.render(await self.snapshot(), refresh_s=REFRESH_S)
        return web.Response(text=page, content_type="text/html", charset="utf-8")


def _guard(ops: Ops, handler: Handler) -> Handler:
    """Answer 403 to a peer outside admin.allowed_networks (when that list is not empty)."""
    networks = ops.config.admin.networks

    async def guarded(request: web.Request) -> web.StreamResponse:
        if networks and not access.allowed(networks, request.remote):
            return json_error(403, "this page is not served to this address")
        return await handler(request)

    return guarded


def add_routes(app: web.Application, ops: Ops) -> None:
    """Add /metrics, /status and /status.json (GET and HEAD; other methods 405)."""
    pages = (
        ("/metrics", ops.metrics_page),
        ("/status", ops.status_html),
        ("/status.json", ops.status_json),
    )
    for route, handler in pages:
        app.router.add_get(route, plain(_guard(ops, handler)))
        app.router.add_route("*", route, method_not_allowed("GET", "HEAD"))


def admin_app(ops: Ops) -> web.Application:
    """The separate admin listener's application: the pages, and 404 for anything else."""
    app = web.Application()
    add_routes(app, ops)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
