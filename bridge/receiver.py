"""aiohttp app factory: routes, authentication, limits, parsing and the error middleware."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from . import normalize, opendental
from .config import Config, Customer
from .errors import (
    BadRequest,
    PayloadTooLarge,
    PublishError,
    RequestError,
    Unauthorized,
    Unavailable,
)
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .publisher import Publisher

log = logging.getLogger("od_bridge.receiver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BOMS_NOT_UTF8 = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"

CONFIG_KEY = web.AppKey("config", Config)
PUBLISHER_KEY = web.AppKey("publisher", Publisher)
METRICS_KEY = web.AppKey("metrics", Metrics)


class Keys:
    """Customer lookup by key: a digest index, then a constant-time comparison."""

    def __init__(self, customers: tuple[Customer, ...]) -> None:
        self._index: dict[bytes, tuple[bytes, Customer]] = {}
        for customer in customers:
            for key in customer.keys:
                raw = key.encode()
                self._index[hashlib.sha256(raw).digest()] = (raw, customer)

    def find(self, presented: str | None) -> Customer:
        """The customer owning this Authorization value, or Unauthorized."""
        if not presented:
            raise Unauthorized("missing Authorization header (the customer API key)")
        raw = presented.strip().encode("utf-8", "replace")
        # The dict lookup sees only a digest of the key; the final check is constant-time.
        found = self._index.get(hashlib.sha256(raw).digest())
        if found is None or not hmac.compare_digest(found[0], raw):
            raise Unauthorized("unknown customer key")
        return found[1]


def parse(body: bytes) -> list[dict[str, Any]] | dict[str, Any]:
    """UTF-8 JSON (BOM allowed) that is an object or an array of objects, else BadRequest."""
    if body.startswith(_UTF8_BOM):
        body = body[3:]
    elif body.startswith(_BOMS_NOT_UTF8):
        raise BadRequest("body must be UTF-8 JSON")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid UTF-8 JSON") from None
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, list) and all(type(row) is dict for row in doc):
        return doc
    raise BadRequest("body must be a JSON object or an array of objects")


class Receiver:
    """The webhook endpoint: authenticate, read within limits, parse, normalize, publish."""

    def __init__(self, config: Config, publisher: Publisher, metrics: Metrics) -> None:
        self.config = config
        self.publisher = publisher
        self.metrics = metrics
        self.keys = Keys(config.customers)
        self.limit = config.listen.max_body_bytes
        self.prefix = config.amqp.exchange_prefix
        self.contexts = {
            c.name: normalize.Context(
                customer=c.name,
                zone=c.zone,
                normalize=c.normalize,
                routing_template=config.amqp.routing_key,
            )
            for c in config.customers
        }
        self._by_header: dict[str, opendental.Table] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _precheck(self, request: web.Request) -> Customer:
        """What can be refused before reading the body: the key and a declared length."""
        try:
            customer = self.keys.find(request.headers.get("Authorization"))
        except Unauthorized:
            self.metrics.auth_failures.inc()
            raise
        length = request.content_length
        if length is not None and length > self.limit:
            raise PayloadTooLarge(f"body is larger than {self.limit} bytes")
        return customer

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse a bad key or size before the client uploads."""
        try:
            self._precheck(request)
        except RequestError as exc:
            self.metrics.rejected.labels(str(exc.status)).inc()
            return error_response(exc, close=True)
        await _default_expect_handler(request)
        return None

    async def _read(self, request: web.Request) -> bytes:
        """The body, refusing it as soon as it grows past the limit (no unbounded buffering)."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge(f"body is larger than {self.limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _resolve(self, request: web.Request, doc: Any) -> opendental.Table:
        """The event type; the Event-Type header's answer is remembered per distinct value."""
        header = request.headers.get("Event-Type")
        if header is not None:
            found = self._by_header.get(header)
            if found is None:
                found = opendental.from_header(header)
                if found is not None and len(self._by_header) < 256:
                    self._by_header[header] = found
            if found is not None:
                return found
        return opendental.resolve(
            header, (request.match_info.get("name"), request.query.get("type")), doc
        )

    def _counters(self, customer: str, type_name: str, status: int) -> tuple[Any, Any]:
        """The labelled request and row counters, looked up once per (customer, type, status)."""
        key = (customer, type_name, status)
        found = self._children.get(key)
        if found is None:
            found = (
                self.metrics.requests.labels(customer, type_name, str(status)),
                self.metrics.rows_published.labels(customer, type_name),
            )
            if len(self._children) < 4096:  # bounded: type names come from requests
                self._children[key] = found
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """POST {path}[/{name}]: answer 200 only once every row is durable."""
        started = time.perf_counter()
        customer_name, type_name, status = "-", "-", 500
        try:
            customer = self._precheck(request)
            customer_name = customer.name
            doc = parse(await self._read(request))
            table = self._resolve(request, doc)
            type_name = table.name
            messages = normalize.messages(
                self.contexts[customer.name],
                table,
                request.headers.get("Workstation") or None,
                doc if isinstance(doc, list) else [doc],
                time.time(),
                prefix=self.prefix,
            )
            # The parsed rows are the bulk of a request's memory (a 1000-row array is several
            # MB of dicts); only the encoded messages are needed while confirms are awaited.
            del doc
            confirm_started = time.perf_counter()
            try:
                await self.publisher.publish(messages)
            except PublishError as exc:
                raise Unavailable("the broker cannot take events right now; retry later") from exc
            self.metrics.confirm_seconds.observe(time.perf_counter() - confirm_started)
            status = 200
            if messages:
                self._counters(customer_name, type_name, 200)[1].inc(len(messages))
            return web.Response(
                body=b'{"accepted":%d}' % len(messages),
                content_type="application/json",
                charset="utf-8",
            )
        except RequestError as exc:
            status = exc.status
            if status != 503:
                self.metrics.rejected.labels(str(status)).inc()
            log.info(
                "request refused",
                extra={"status": status, "reason": exc.reason, "customer": customer_name},
            )
            return error_response(exc, close=status in (401, 413))
        finally:
            self._counters(customer_name, type_name, status)[0].inc()
            self.metrics.request_seconds.observe(time.perf_counter() - started)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def error_response(exc: RequestError, *, close: bool = False) -> web.Response:
    """`{"error": reason}` with the error's status; Retry-After on 503."""
    response = web.json_response({"error": exc.reason}, status=exc.status, dumps=_dumps)
    if isinstance(exc, Unavailable):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if close:
        # The body was not read: close rather than drain megabytes we will never use.
        response.force_close()
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


def build_app(
    config: Config,
    publisher: Publisher,
    metrics: Metrics | None = None,
    ready: Callable[[], dict[str, Any]] | None = None,
) -> web.Application:
    """The aiohttp application: webhook routes, /healthz, /readyz and /metrics."""
    metrics = metrics or Metrics()
    receiver = Receiver(config, publisher, metrics)
    app = web.Application(
        middlewares=[errors_middleware], client_max_size=config.listen.max_body_bytes
    )
    app[CONFIG_KEY] = config
    app[PUBLISHER_KEY] = publisher
    app[METRICS_KEY] = metrics
    path = config.listen.path
    for route in (path, f"{path}/", f"{path}/{{name}}", f"{path}/{{name}}/"):
        app.router.add_post(route, receiver.handle, expect_handler=receiver.expect)

    def readiness() -> dict[str, Any]:
        return {"broker": "connected" if publisher.ready else "disconnected"}

    probe = ready or readiness

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        state = probe()
        ok = bool(state.pop("ready", publisher.ready))
        return web.json_response({"ready": ok, **state}, status=200 if ok else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        metrics.broker_up.set(1 if publisher.ready else 0)
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app
