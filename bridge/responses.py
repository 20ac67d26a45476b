"""JSON answers around the receiver: errors, request ids, 404/405, the cold routes' wrapper.

No aiohttp middleware: a middleware layer costs two coroutines per request on the webhook's
hot path (ours and aiohttp's `_fix_request_current_app`), so the webhook handler does this
itself and the other routes are wrapped one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from aiohttp import web

from . import access
from .errors import RequestError, TooManyRequests, Unavailable
from .log import request_id as current_request_id

log = logging.getLogger("od_bridge.receiver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_HEADER = "X-Request-Id"


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def json_error(status: int, reason: str) -> web.Response:
    """`{"error": reason}` with `status`."""
    return web.json_response({"error": reason}, status=status, dumps=_dumps)


def error_response(exc: RequestError, *, close: bool = False) -> web.Response:
    """`{"error": reason}` with the error's status; Retry-After on 503."""
    response = json_error(exc.status, exc.reason)
    if isinstance(exc, Unavailable | TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if close:
        # The body was not read: close rather than drain megabytes we will never use.
        response.force_close()
    return response


def unexpected(exc: Exception) -> web.Response:
    """The answer to an exception no handler expected: an HTTP error as JSON, else 500."""
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return json_error(exc.status, exc.reason)
    # A bug must not take the server down, nor show its details to the caller.
    log.error("unexpected error", exc_info=exc)  # the class and frames only (log.py)
    return json_error(500, "internal error")


def start_request(request: web.Request) -> str:
    """This request's id (the caller's safe X-Request-Id, else a new one), set for logging."""
    # aiohttp runs each request in a task of its own, and the expect handler in that same
    # task before the handler: an id already set here is this request's, never another's.
    rid = current_request_id.get() or access.request_id(request.headers.get(REQUEST_ID_HEADER))
    current_request_id.set(rid)
    return rid


def plain(handler: Handler) -> Handler:
    """Wrap a route other than the webhook: request id, JSON errors."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        rid = start_request(request)
        try:
            response = await handler(request)
        except Exception as exc:  # task boundary: a bug must not take the server down
            if isinstance(exc, web.HTTPException) and exc.status < 400:
                raise
            response = unexpected(exc)
        response.headers[REQUEST_ID_HEADER] = rid
        return response

    return wrapped


@plain
async def not_found(_: web.Request) -> web.StreamResponse:
    """Any path without a route."""
    return json_error(404, "Not Found")


def method_not_allowed(*allowed: str) -> Handler:
    """A route's other methods: 405 with Allow."""

    @plain
    async def refuse(_: web.Request) -> web.StreamResponse:
        response = json_error(405, "Method Not Allowed")
        response.headers["Allow"] = ",".join(allowed)
        return response

    return refuse
