"""HTTP plumbing around the receiver: JSON error answers, request ids, the error middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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


def error_response(exc: RequestError, *, close: bool = False) -> web.Response:
    """`{"error": reason}` with the error's status; Retry-After on 503."""
    response = web.json_response({"error": exc.reason}, status=exc.status, dumps=_dumps)
    if isinstance(exc, Unavailable | TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if close:
        # The body was not read: close rather than drain megabytes we will never use.
        response.force_close()
    return response


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON and carries X-Request-Id; every log line of the request its id.

    One middleware rather than two: each layer costs a coroutine per request on the hot path.
    """
    # aiohttp runs each request in a task of its own, and the expect handler in that same
    # task before the middlewares: an id already set here is this request's, never another's.
    rid = current_request_id.get() or access.request_id(request.headers.get(REQUEST_ID_HEADER))
    token = current_request_id.set(rid)
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = web.json_response({"error": exc.reason}, status=exc.status, dumps=_dumps)
        except Exception as exc:  # task boundary: a bug must not take the server down
            log.error("unexpected error", extra={"error": type(exc).__name__})
            response = web.json_response({"error": "internal error"}, status=500, dumps=_dumps)
        response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        current_request_id.reset(token)
