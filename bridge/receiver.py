"""aiohttp app factory: the webhook routes, /healthz, /readyz, the operator's pages and schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import schema_routes
from .config import Config
from .health import Health
from .metrics import Metrics
from .ops import Ops, add_routes
from .publisher import Publisher
from .responses import method_not_allowed, not_found, plain
from .webhook import Receiver

CONFIG_KEY = web.AppKey("config", Config)
PUBLISHER_KEY = web.AppKey("publisher", Publisher)
METRICS_KEY = web.AppKey("metrics", Metrics)


def build_app(
    config: Config,
    publisher: Publisher,
    metrics: Metrics | None = None,
    ready: Callable[[], dict[str, Any]] | None = None,
    *,
    ops: Ops | None = None,
) -> web.Application:
    """The aiohttp application: webhook routes, /healthz, /readyz, and the operator's pages.

    /metrics, /status and /status.json are served here unless `admin.listen` moves them to a
    listener of their own (`ops.admin_app`); `ops` is what they read (built here if not given).
    """
    metrics = metrics or Metrics()

    def readiness() -> dict[str, Any]:
        return {
            "ready": publisher.ready,
            "broker": "connected" if publisher.ready else "disconnected",
        }

    probe = ready or readiness
    if ops is None:
        health = Health(config)
        metrics.registry.register(health)
        ops = Ops(config, metrics, health, probe)
    receiver = Receiver(config, publisher, metrics, ops.health)
    app = web.Application(client_max_size=config.listen.max_body_bytes)
    app[CONFIG_KEY] = config
    app[PUBLISHER_KEY] = publisher
    app[METRICS_KEY] = metrics
    path = config.listen.path
    for route in (path, f"{path}/", f"{path}/{{name}}", f"{path}/{{name}}/"):
        app.router.add_post(route, receiver.handle, expect_handler=receiver.expect)
        app.router.add_route("*", route, method_not_allowed("POST"))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        state = probe()
        return web.json_response(state, status=200 if state["ready"] else 503)

    for route, handler in (("/healthz", healthz), ("/readyz", readyz)):
        app.router.add_get(route, plain(handler))
        app.router.add_route("*", route, method_not_allowed("GET", "HEAD"))
    if config.admin.address is None:
        add_routes(app, ops)
    schema_routes.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", not_found)  # last: only what nothing else matched
    return app
