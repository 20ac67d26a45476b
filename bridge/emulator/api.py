"""The emulator's Subscriptions REST API: fields, defaults, validation and status codes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from ..opendental import DATE_FORMAT, DATETIME_FORMAT, KNOWN_TABLES, NEVER

FIELDS = (
    "SubscriptionNum",
    "EndPointUrl",
    "Workstation",
    "CustomerKey",
    "WatchTable",
    "PollingSeconds",
    "UiEventType",
    "DateTimeStart",
    "DateTimeStop",
    "Note",
)
# Newer versions' health fields (seen in 2026 integrations, not in the docs: key order and the
# exact texts are our guess). Emulated: a failed delivery sets them, a successful one clears
# FailureReason and SubsequentFailures.
FAILURE_DEFAULTS: dict[str, Any] = {
    "FailureReason": "",
    "SubsequentFailures": 0,
    "DateTimeLastFailure": NEVER,
    "DateTimeNextRetry": NEVER,
}
FAILURE_FIELDS = tuple(FAILURE_DEFAULTS)
DB_NAMES = {t.name.lower(): t.name for t in KNOWN_TABLES if t.kind == "db"}
UI_NAMES = {t.name.lower(): t.name for t in KNOWN_TABLES if t.kind == "ui"}


class ApiError(Exception):
    """An Open Dental error answer: status and the sentence sent as a bare JSON string."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response the way Open Dental sends it."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def live(sub: dict[str, Any], now: str) -> bool:
    """The subscription has no DateTimeStop, or one after `now` (both `yyyy-MM-dd HH:mm:ss`)."""
    return bool(sub["DateTimeStop"] == NEVER or sub["DateTimeStop"] > now)


def parse_when(value: Any, name: str) -> str:
    """An Open Dental date or date-time as `yyyy-MM-dd HH:mm:ss`; 400 if it isn't one."""
    text = str(value).strip()
    for fmt in (DATETIME_FORMAT, DATE_FORMAT):
        try:
            return datetime.strptime(text, fmt).strftime(DATETIME_FORMAT)
        except ValueError:
            continue
    raise ApiError(400, f"{name} is not a valid date/time")


class Subscriptions:
    """Every customer key's subscriptions, and the rules Open Dental applies to changes."""

    def __init__(
        self, clock: Callable[[], datetime], allow_delete: bool = True, failure_fields: bool = True
    ) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self._clock = clock
        self._next = 1
        self.allow_delete = allow_delete
        self.failure_fields = failure_fields

    def of(self, key: str) -> list[dict[str, Any]]:
        """The subscriptions of one customer key, oldest first."""
        return [s for s in self.items.values() if s["CustomerKey"] == key]

    def _get(self, key: str, num: str) -> dict[str, Any]:
        sub = self.items.get(int(num)) if num.isdigit() else None
        if sub is None or sub["CustomerKey"] != key:
            raise ApiError(404, "Subscription not found.")
        return sub

    @staticmethod
    def _text(body: dict[str, Any], name: str, limit: int = 255) -> str:
        value = body.get(name, "")
        if not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string.")
        if len(value) > limit:
            raise ApiError(400, f"{name} must be {limit} characters or less.")
        return value

    @staticmethod
    def _polling(body: dict[str, Any]) -> int:
        value = body.get("PollingSeconds")
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise ApiError(400, "PollingSeconds must be a whole number.")
        if int(value) < 1:
            raise ApiError(400, "PollingSeconds must be at least 1.")
        return int(value)

    def create(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST: validate, apply defaults, reject duplicates; the new object."""
        url = self._text(body, "EndPointUrl")
        if not url:
            raise ApiError(400, "EndPointUrl is required.")
        table, event = self._text(body, "WatchTable"), self._text(body, "UiEventType")
        if table and event:
            raise ApiError(400, "A subscription is either a WatchTable or a UiEventType, not both.")
        if not table and not event:
            raise ApiError(400, "WatchTable or UiEventType is required.")
        if table:
            if table.lower() not in DB_NAMES:
                raise ApiError(400, f"WatchTable '{table}' is not supported.")
            if body.get("PollingSeconds") in (None, ""):
                raise ApiError(400, "PollingSeconds is required.")
            polling, table = self._polling(body), DB_NAMES[table.lower()]
        else:
            if event.lower() not in UI_NAMES:
                raise ApiError(400, f"UiEventType '{event}' is not supported.")
            if body.get("PollingSeconds") not in (None, 0, "0", ""):
                raise ApiError(400, "PollingSeconds is only allowed for WatchTable subscriptions.")
            polling, event = 0, UI_NAMES[event.lower()]
        now = self._clock().strftime(DATETIME_FORMAT)
        sub = {
            "SubscriptionNum": self._next,
            "EndPointUrl": url,
            "Workstation": self._text(body, "Workstation"),
            "CustomerKey": key,
            "WatchTable": table,
            "PollingSeconds": polling,
            "UiEventType": event,
            "DateTimeStart": parse_when(body["DateTimeStart"], "DateTimeStart")
            if body.get("DateTimeStart")
            else now,
            "DateTimeStop": parse_when(body["DateTimeStop"], "DateTimeStop")
            if body.get("DateTimeStop")
            else NEVER,
            "Note": self._text(body, "Note"),
        }
        if self.failure_fields:
            sub |= FAILURE_DEFAULTS
        same = ("EndPointUrl", "Workstation", "WatchTable", "UiEventType")
        for other in self.of(key):
            if live(other, now) and all(str(other[f]).lower() == str(sub[f]).lower() for f in same):
                raise ApiError(400, "An identical subscription already exists.")
        self.items[self._next] = sub
        self._next += 1
        return dict(sub)

    def update(self, key: str, num: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT: change the given updatable fields only; the updated object."""
        sub = self._get(key, num)
        for frozen in ("WatchTable", "UiEventType", "CustomerKey"):
            if frozen in body:
                raise ApiError(400, f"{frozen} cannot be updated.")
        changes: dict[str, Any] = {}
        for name in ("EndPointUrl", "Workstation", "Note"):
            if name in body:
                changes[name] = self._text(body, name)
        if changes.get("EndPointUrl") == "":
            raise ApiError(400, "EndPointUrl is required.")
        if "PollingSeconds" in body:
            if not sub["WatchTable"]:
                raise ApiError(400, "PollingSeconds is only allowed for WatchTable subscriptions.")
            changes["PollingSeconds"] = self._polling(body)
        for name in ("DateTimeStart", "DateTimeStop"):
            if name in body:
                changes[name] = parse_when(body[name], name)
        sub.update(changes)
        return dict(sub)

    def delete(self, key: str, num: str) -> None:
        """DELETE, or 401 when the emulated permission tier has no DELETE."""
        self._get(key, num)
        if not self.allow_delete:
            raise ApiError(401, "This API key does not have permission for Subscriptions DELETE.")
        del self.items[int(num)]


class Gate:
    """ODFHIR authentication against configured keys, and optional per-key throttling."""

    def __init__(
        self,
        developer_keys: tuple[str, ...],
        customer_keys: tuple[str, ...],
        throttle_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.developer_keys = set(developer_keys)
        self.customer_keys = set(customer_keys)
        self.throttle_s = throttle_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self.calls = 0
        self.throttled = 0

    def admit(self, header: str | None) -> str:
        """The caller's customer key, or ApiError 401 / 429."""
        scheme, _, creds = (header or "").partition(" ")
        dev, _, cust = creds.strip().partition("/")
        if scheme != "ODFHIR" or dev not in self.developer_keys or cust not in self.customer_keys:
            raise ApiError(401, "Invalid Authorization header.")
        now = self._clock()
        last = self._last.get(cust)
        if self.throttle_s > 0 and last is not None and now - last < self.throttle_s:
            self.throttled += 1
            wait = math.ceil(self.throttle_s - (now - last))
            raise ApiError(429, "Too many requests.", {"Retry-After": str(max(1, wait))})
        self._last[cust] = now
        self.calls += 1
        return cust


def routes(subs: Subscriptions, gate: Gate, page_size: int) -> list[web.RouteDef]:
    """The `/api/v1/subscriptions` routes, guarded by `gate`."""

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise ApiError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return body

    def guarded(handler: Callable[[web.Request, str], Any]) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                key = gate.admit(request.headers.get("Authorization"))
                result: web.StreamResponse = await handler(request, key)
                return result
            except ApiError as exc:
                return answer(exc.message, exc.status, exc.headers)

        return wrapped

    async def list_(request: web.Request, key: str) -> web.Response:
        def number(name: str, default: int) -> int:
            raw = request.query.get(name, "")
            return int(raw) if raw.isdigit() else default

        limit = min(number("Limit", page_size), page_size)
        offset = number("Offset", 0)
        return answer(subs.of(key)[offset : offset + limit])

    async def post(request: web.Request, key: str) -> web.Response:
        made = subs.create(key, await body_of(request))
        location = f"/api/v1/subscriptions/{made['SubscriptionNum']}"
        return answer(made, 201, {"Location": location})

    async def put(request: web.Request, key: str) -> web.Response:
        return answer(subs.update(key, request.match_info["num"], await body_of(request)))

    async def delete(request: web.Request, key: str) -> web.Response:
        subs.delete(key, request.match_info["num"])
        return web.Response(status=200)

    base = "/api/v1/subscriptions"
    return [
        web.get(base, guarded(list_)),
        web.post(base, guarded(post)),
        web.put(base + "/{num}", guarded(put)),
        web.delete(base + "/{num}", guarded(delete)),
    ]
