"""The webhook endpoint: authentication, limits, parsing, normalizing and publishing one POST."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from . import access, normalize, opendental
from .body import parse
from .config import Config
from .config_customer import Customer
from .errors import (
    ClientClosed,
    Forbidden,
    PayloadTooLarge,
    PublishError,
    RequestError,
    SpoolError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from .health import Health
from .metrics import Metrics
from .publisher import Publisher
from .request_body import header_text, read_body
from .responses import (
    REQUEST_ID_HEADER,
    error_response,
    json_error,
    start_request,
    unexpected,
)
from .typenames import TypeNames

log = logging.getLogger("od_bridge.receiver")  # the name operators filter on, kept

# Refusals answered before the body was read (or with a body that cannot be read to its end):
# the connection is closed instead of drained.
_UNREAD_BODY = (401, 403, 408, 413, 429)


class Receiver:
    """The webhook endpoint: authenticate, read within limits, parse, normalize, publish."""

    def __init__(
        self, config: Config, publisher: Publisher, metrics: Metrics, health: Health
    ) -> None:
        self.config = config
        self.publisher = publisher
        self.metrics = metrics
        self.health = health
        self.keys = access.Keys(config.customers)
        self.limit = config.listen.max_body_bytes
        self.max_active = config.listen.max_concurrent_requests
        self.active = 0
        self.prefix = config.amqp.exchange_prefix
        self.contexts = {
            c.name: normalize.Context(
                customer=c.name,
                zone=c.zone,
                normalize=c.normalize,
                routing_template=config.amqp.routing_key,
                redact=frozenset(name.lower() for name in c.redact),
                fields={t.lower(): frozenset(names) for t, names in c.fields.items()},
                schema_base=f"{config.public_url}/schemas",
            )
            for c in config.customers
        }
        self.networks = {c.name: c.networks for c in config.customers}
        limit = config.listen.auth_failure_limit
        self.limiter = access.AuthLimiter(limit) if limit is not None else None
        # Addresses some customer's allowed_networks names are an office's own: the limiter
        # never blocks them, so one bad workstation cannot lock its office out (README).
        self.offices = tuple(net for c in config.customers for net in c.networks)
        self._by_header: dict[str, opendental.Table] = {}
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.max_rows = config.listen.max_rows
        self.chunk_timeout_s = config.listen.body_chunk_timeout_s
        self.body_timeout_s = config.listen.body_timeout_s
        self.types = TypeNames(
            self.prefix,
            config.type_names,
            config.amqp.max_unknown_types,
        )

    def _precheck(self, request: web.Request, labels: dict[str, str] | None = None) -> Customer:
        """What can be refused before reading the body: rate limit, key, network, length."""
        # The TCP peer: behind a reverse proxy that is the proxy (X-Forwarded-For is not
        # trusted, anyone can send it), see docs on allowed_networks and the limiter.
        peer = request.remote
        client = access.client_bucket(peer)
        limiter = self.limiter
        if limiter is not None and self.offices and access.allowed(self.offices, peer):
            limiter = None
        if limiter is not None:
            wait = limiter.retry_after(client)
            if wait is not None:
                # No key comparison at all: a guesser learns nothing while blocked.
                raise TooManyRequests(
                    "too many failed authentications from this address; retry later", wait
                )
        try:
            customer = self.keys.find(request.headers.get("Authorization"))
        except Unauthorized:
            self.metrics.auth_failures.inc()
            if limiter is not None:
                limiter.failed(client)
            raise
        if labels is not None:
            # Known from here on, so a 403 or 413 is counted against the customer that sent it.
            labels["customer"] = customer.name
        networks = self.networks[customer.name]
        if networks and not access.allowed(networks, peer):
            raise Forbidden(f"this customer key is not accepted from {peer or 'this address'}")
        if limiter is not None:
            limiter.succeeded(client)
        length = request.content_length
        if length is not None and length > self.limit:
            raise PayloadTooLarge(f"body is larger than {self.limit} bytes")
        return customer

    def _refused(self, request: web.Request, exc: RequestError, labels: dict[str, str]) -> None:
        """Count and log one refusal (never the body, never the key)."""
        if exc.status != 503:
            self.metrics.rejected.labels(str(exc.status)).inc()
        level = logging.WARNING if exc.status in (403, 429, 503) else logging.INFO
        log.log(
            level,
            "request refused",
            extra={
                "status": exc.status,
                "reason": exc.reason,
                "customer": labels["customer"],
                "client": request.remote or "-",
            },
        )

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse a bad key or size before the client uploads."""
        rid = start_request(request)  # the handler that follows in this task keeps it
        labels = {"customer": "-", "type": "-"}
        try:
            self._precheck(request, labels)
        except RequestError as exc:
            self._refused(request, exc, labels)
            self.metrics.requests.labels(labels["customer"], "-", str(exc.status)).inc()
            response = error_response(exc, close=True)
            response.headers[REQUEST_ID_HEADER] = rid
            return response
        try:
            await _default_expect_handler(request)
        except web.HTTPException as exc:  # an Expect other than 100-continue: 417, as JSON
            self.metrics.requests.labels(labels["customer"], "-", str(exc.status)).inc()
            response = json_error(exc.status, exc.reason)
            response.force_close()
            response.headers[REQUEST_ID_HEADER] = rid
            return response
        return None

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

    def _counters(self, customer: str, type_name: str, status: str) -> tuple[Any, Any]:
        """The labelled request and row counters, looked up once per (customer, type, status).

        Every label value is bounded: customers from the config, types known or `other`.
        """
        key = (customer, type_name, status)
        found = self._children.get(key)
        if found is None:
            found = (
                self.metrics.requests.labels(customer, type_name, status),
                self.metrics.rows_published.labels(customer, type_name),
            )
            self._children[key] = found
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """POST {path}[/{name}]: answer 200 only once every row is durable."""
        started = time.perf_counter()
        rid = start_request(request)
        labels = {"customer": "-", "type": "-"}
        status = "500"
        self.active += 1
        try:
            response = await self._accept(request, labels)
            status = "200"
        except ClientClosed:
            # The client's problem, not ours: no 5xx, no warning, and nobody to answer.
            status = "client_closed"
            log.debug("client closed mid-body", extra={"customer": labels["customer"]})
            response = web.Response(status=499)
        except RequestError as exc:
            status = str(exc.status)
            self._refused(request, exc, labels)
            response = error_response(exc, close=exc.status in _UNREAD_BODY)
        except Exception as exc:  # task boundary: a bug must not take the server down
            response = unexpected(exc)
            status = str(response.status)
        finally:
            self.active -= 1
            self._counters(labels["customer"], labels["type"], status)[0].inc()
            self.metrics.request_seconds.observe(time.perf_counter() - started)
        response.headers[REQUEST_ID_HEADER] = rid
        return response

    async def _accept(self, request: web.Request, labels: dict[str, str]) -> web.Response:
        """Check, read, parse, normalize and publish one delivery; raise RequestError if not."""
        customer = self._precheck(request, labels)
        if self.active > self.max_active:
            # Bounded work in flight: a fast 503 beats buffering without limit.
            raise Unavailable("too many requests in flight; retry later", retry_after_s=1)
        doc = parse(
            await read_body(request, self.limit, self.chunk_timeout_s, self.body_timeout_s),
            self.max_rows,
        )
        table = self._resolve(request, doc)
        labels["type"] = self.types.label(table)
        messages = normalize.messages(
            self.contexts[customer.name],
            table,
            header_text(request.headers.get("Workstation")),
            doc if isinstance(doc, list) else [doc],
            time.time(),
            prefix=self.prefix,
            exchange=self.types.exchange(table),
        )
        # The parsed rows are the bulk of a request's memory (a 1000-row array is several
        # MB of dicts); only the encoded messages are needed while confirms are awaited.
        del doc
        confirm_started = time.perf_counter()
        try:
            confirmed = await self.publisher.publish(messages)
        except (PublishError, SpoolError) as exc:
            raise Unavailable("the broker cannot take events right now; retry later") from exc
        self.metrics.confirm_seconds.observe(time.perf_counter() - confirm_started)
        self.health.event(customer.name, labels["type"])
        if confirmed and messages:  # spooled rows are counted by the outbox
            self._counters(customer.name, labels["type"], "200")[1].inc(len(messages))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request accepted",
                extra={"customer": customer.name, "type": labels["type"], "rows": len(messages)},
            )
        return web.Response(
            body=b'{"accepted":%d}' % len(messages),
            content_type="application/json",
            charset="utf-8",
        )
