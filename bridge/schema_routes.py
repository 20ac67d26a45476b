"""GET /schemas/…: the JSON Schemas shipped in the package, read once at start, off the hot path."""

from __future__ import annotations

from aiohttp import web

from . import contract
from .responses import json_error, method_not_allowed, plain

CONTENT_TYPE = "application/schema+json"
ROUTE = r"/schemas/{path:[A-Za-z0-9_/]+\.json}"


def add_routes(app: web.Application) -> None:
    """`/schemas/v1/appointment.json`, `/schemas/v1/raw/…`; `/schemas/appointment.json` = latest."""
    # Read every file now, so that a GET never touches the disk and the set is fixed.
    bodies = {path: contract.shipped(path) for path in contract.PATHS}

    async def schema(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if "/" not in path:
            path = f"{contract.SCHEMA_VERSION}/{path}"
        body = bodies.get(path)
        if body is None:
            return json_error(404, "Not Found")
        return web.Response(body=body, content_type=CONTENT_TYPE)

    app.router.add_get(ROUTE, plain(schema))
    app.router.add_route("*", ROUTE, method_not_allowed("GET", "HEAD"))
