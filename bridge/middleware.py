"""HTTP plumbing around the receiver: JSON error answers, request ids, the error middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def request_context(request: web.Request) -> Iterator[str]:
    """Bind the request's id (the caller's X-Request-Id if safe, else new) to its log lines."""
    # aiohttp runs each request in a task of its own, and the expect handler in that same
    # task before the middlewares: an id already set here is this request's, never another's.
    rid = current_request_id.get() or access.request_id(request.headers.get(REQUEST_ID_HEADER))
    token = current_request_id.set(rid)
    try:
        yield rid
    finally:
        current_request_id.reset(token)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer carries X-Request-Id; every log line of the request carries request_id."""
    with request_context(request) as rid:
        response = await handler(request)
        response.headers[REQUEST_ID_HEADER] = rid
        return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON; nothing unexpected escapes as a traceback or a crash."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, dumps=_dumps)
    except Exception as exc:  # task boundary: a bug must not take the server down
        log.error("unexpected error", extra={"error": type(exc).__name__})
        return web.json_response({"error": "internal error"}, status=500, dumps=_dumps)
