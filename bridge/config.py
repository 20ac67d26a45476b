"""The configuration as frozen, validated models (pydantic v2); config_loader reads the YAML."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .routing import ROUTING_VALUE_BYTES, routing_key

MANAGED_NOTE = "managed by od-bridge"
_NAME = re.compile(r"[a-z0-9-]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_OD_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _network(entry: str) -> str:
    """One allowed_networks entry: an address or a CIDR network, with a hint for host bits."""
    text = entry.strip()
    try:
        ipaddress.ip_network(text)
    except ValueError:
        meant = None
        with suppress(ValueError):
            meant = ipaddress.ip_network(text, strict=False)
        if meant is not None:
            raise ValueError(f"'{entry}' has host bits set; did you mean {meant}?") from None
        raise ValueError(
            f"'{entry}' is not an IP address or CIDR network (e.g. 192.0.2.0/24)"
        ) from None
    return text


class Tls(_Model):
    """Serve HTTPS with this certificate chain and private key (PEM files)."""

    cert: Path
    key: Path


class AuthFailureLimit(_Model):
    """Failed-authentication rate limit per client address (the TCP peer)."""

    max_failures: int = Field(20, ge=1)
    window_s: float = Field(60.0, gt=0, le=86_400)
    max_clients: int = Field(10_000, ge=1)  # addresses remembered at once (bounded memory)


class Listen(_Model):
    """Where the receiver listens for Open Dental's POSTs."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    path: str = "/apievents"
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_rows: int = Field(5000, ge=1)  # Open Dental sends at most 1,000 per request
    max_concurrent_requests: int = Field(512, ge=1)
    # Slow or idle peers: request headers, each body chunk, the whole body, an idle connection.
    header_timeout_s: float = Field(10.0, gt=0, le=300)
    body_chunk_timeout_s: float = Field(15.0, gt=0, le=300)
    body_timeout_s: float = Field(60.0, gt=0, le=3600)
    keepalive_timeout_s: float = Field(60.0, gt=0, le=75)
    # Open connections at once; lowered to fit under the process's descriptor limit.
    max_connections: int = Field(1000, ge=16)
    # On SIGTERM: /readyz answers 503 while requests are still accepted, so load balancers
    # and Kubernetes send elsewhere before the listener closes. 0: stop accepting at once.
    shutdown_grace_s: float = Field(5.0, ge=0, le=300)
    tls: Tls | None = None
    auth_failure_limit: AuthFailureLimit | None = AuthFailureLimit()
    # durable: ready while a request can be made durable (broker or spool); broker: only while
    # a publish can be confirmed, so a balancer prefers replicas that reach RabbitMQ.
    ready_when: Literal["durable", "broker"] = "durable"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise ValueError("must start with '/' and name a path, e.g. /apievents")
        return value.rstrip("/")


class Amqp(_Model):
    """The RabbitMQ broker and how messages are routed and confirmed."""

    # One URL, or a list of a cluster's node URLs (tried in shuffled order, any one will do).
    url: SecretStr | tuple[SecretStr, ...] = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    connection_name: str | None = None  # default: od-bridge@<host name>
    unrouted_queue_type: Literal["quorum", "classic"] = "quorum"
    exchange_prefix: str = "opendental"
    routing_key: str = "{customer}.{clinic}.{workstation}"
    unrouted_max_length: int = Field(100_000, ge=1)
    retry_budget_s: float = Field(2.0, gt=0, le=60)
    confirm_timeout_s: float = Field(5.0, gt=0, le=120)
    max_in_flight: int = Field(1024, ge=1)
    heartbeat_s: int = Field(30, ge=0, le=600)
    # Event-type names the bridge does not know that get an exchange of their own; later ones
    # share `{prefix}.db.other` / `{prefix}.ui.other` (their CloudEvent keeps the real type).
    max_unknown_types: int = Field(100, ge=0, le=10_000)

    @field_validator("exchange_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("use letters, digits, '.', '-' or '_'")
        return value

    @field_validator("routing_key")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(customer="c", clinic=0, workstation="w")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                "may only use {customer}, {clinic} and {workstation} placeholders"
            ) from exc
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | tuple[SecretStr, ...]) -> SecretStr | tuple[SecretStr, ...]:
        urls = value if isinstance(value, tuple) else (value,)
        if not urls:
            raise ValueError("give at least one amqp:// or amqps:// URL")
        for url in urls:
            if urlsplit(url.get_secret_value()).scheme not in ("amqp", "amqps"):
                raise ValueError("must be amqp:// or amqps:// URLs")
        return value

    @property
    def urls(self) -> tuple[str, ...]:
        """Every broker URL, as configured (one, or a cluster's nodes)."""
        urls = self.url if isinstance(self.url, tuple) else (self.url,)
        return tuple(u.get_secret_value() for u in urls)


class Spool(_Model):
    """The local SQLite outbox used while the broker cannot confirm."""

    enabled: bool = True
    path: Path = Path("var/spool.sqlite3")
    max_events: int = Field(1_000_000, ge=1)
    # Kept free on the spool's filesystem: rows are refused below it, so deletes still commit.
    reserve_bytes: int = Field(8 * 1024 * 1024, ge=0)


class Api(_Model):
    """How the syncer reaches this office's Open Dental REST API."""

    url: str = "https://api.opendental.com/api/v1"
    developer_key: SecretStr
    min_interval_s: float | None = Field(None, ge=0)
    timeout_s: float = Field(70.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def is_local(self) -> bool:
        """True for the Local API / API Service on this network (not throttled)."""
        host = urlsplit(self.url).hostname or ""
        return host in _LOCAL_HOSTS or urlsplit(self.url).port in (30222, 30223)

    @property
    def pacing_s(self) -> float:
        """Seconds between two calls with this customer key (5 s Remote, 0 local by default)."""
        if self.min_interval_s is not None:
            return self.min_interval_s
        return 0.0 if self.is_local else 5.0


class Subscription(_Model):
    """One subscription the office should have: a WatchTable or a UiEventType."""

    watch_table: str | None = None
    ui_event_type: str | None = None
    polling_seconds: int | None = Field(None, ge=1)
    workstation: str = ""
    endpoint_url: str | None = Field(None, max_length=255)
    note: str = Field(MANAGED_NOTE, max_length=255)
    date_time_stop: str | None = None

    @field_validator("date_time_stop")
    @classmethod
    def _stop(cls, value: str | None) -> str | None:
        # Open Dental takes `yyyy-MM-dd` or `yyyy-MM-dd HH:mm:ss` (office wall clock, no offset).
        if value is not None and not _OD_DATETIME.fullmatch(value):
            raise ValueError("use yyyy-MM-dd or yyyy-MM-dd HH:mm:ss (office wall clock)")
        return value

    @model_validator(mode="after")
    def _either(self) -> Subscription:
        if (self.watch_table is None) == (self.ui_event_type is None):
            raise ValueError("give exactly one of watch_table or ui_event_type")
        name = self.watch_table or self.ui_event_type or ""
        if not _WORD.fullmatch(name):
            raise ValueError(f"'{name}' is not a table or event name")
        if self.ui_event_type is not None and self.polling_seconds is not None:
            raise ValueError("polling_seconds applies to watch_table subscriptions only")
        return self

    @property
    def name(self) -> str:
        """The WatchTable or UiEventType."""
        return self.watch_table or self.ui_event_type or ""


class Customer(_Model):
    """One dental office: its key, its time zone and the subscriptions it should have."""

    name: str
    customer_key: SecretStr
    extra_keys: tuple[SecretStr, ...] = ()
    timezone: str | None = None
    normalize: bool = True
    allowed_networks: tuple[Annotated[str, AfterValidator(_network)], ...] = ()
    redact: tuple[str, ...] = ()
    fields: Mapping[str, tuple[str, ...]] = Field(default_factory=dict)
    # Table/type and field names newer than this bridge, accepted although it does not know them.
    allow_unknown: tuple[str, ...] = ()
    api: Api | None = None
    subscriptions: tuple[Subscription, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("use lower-case letters, digits and '-' only")
        return value

    @field_validator("customer_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Customer:
        # The syncer matches subscriptions by (kind, name, workstation): two entries with the
        # same triple would fight over one Open Dental subscription.
        seen: set[tuple[bool, str, str]] = set()
        for sub in self.subscriptions:
            triple = (sub.watch_table is not None, sub.name.lower(), sub.workstation.lower())
            if triple in seen:
                where = f" on workstation '{sub.workstation}'" if sub.workstation else ""
                raise ValueError(f"subscription '{sub.name}'{where} is listed twice")
            seen.add(triple)
        return self

    @field_validator("redact")
    @classmethod
    def _redact(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not entry.strip():
                raise ValueError("field names must not be empty")
        return value

    @field_validator("allow_unknown")
    @classmethod
    def _allow(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not _WORD.fullmatch(entry):
                raise ValueError(f"'{entry}' is not a table, event or field name")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
        seen: set[str] = set()
        for name, allowed in value.items():
            if not _WORD.fullmatch(name):
                raise ValueError(f"'{name}' is not a table or event name")
            if name.lower() in seen:
                raise ValueError(f"'{name}' is listed twice")
            seen.add(name.lower())
            if any(not field.strip() for field in allowed):
                raise ValueError(f"{name}: field names must not be empty")
        return value

    @property
    def subscribed(self) -> tuple[str, ...]:
        """The WatchTable and UiEventType names of this customer's subscriptions."""
        return tuple(sub.name for sub in self.subscriptions)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """allowed_networks parsed; empty means every address may post."""
        return tuple(ipaddress.ip_network(entry) for entry in self.allowed_networks)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every customer key accepted in Authorization (the first is the API key)."""
        return (
            self.customer_key.get_secret_value(),
            *(k.get_secret_value() for k in self.extra_keys),
        )

    @property
    def zone(self) -> Any:
        """The office's time zone (this host's when not configured)."""
        return ZoneInfo(self.timezone) if self.timezone else host_zone()


class Sync(_Model):
    """How the daemon keeps the office's subscriptions in line with this file."""

    mode: Literal["off", "plan", "apply"] = "plan"
    interval_s: float = Field(300.0, ge=1)
    prune: Literal["managed", "none"] = "managed"

    @field_validator("mode", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `mode: off` as the boolean false.
        return "off" if value is False else value


class Admin(_Model):
    """Where /metrics, /status and /status.json are served, and to whom."""

    listen: str | None = None  # "host:port"; unset: on the main listener, as before
    allowed_networks: tuple[Annotated[str, AfterValidator(_network)], ...] = ()

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("use host:port, e.g. 127.0.0.1:9464 ([::1]:9464 for IPv6)")
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) of the separate listener, or None when there is none."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """allowed_networks parsed; empty means every address that reaches the listener."""
        return tuple(ipaddress.ip_network(entry) for entry in self.allowed_networks)


class Log(_Model):
    """Log level and format (JSON lines, or text for a terminal)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Config(_Model):
    """The whole od-bridge configuration."""

    listen: Listen = Listen()
    public_url: str = "http://127.0.0.1:8080"
    amqp: Amqp = Amqp()
    spool: Spool = Spool()
    customers: tuple[Customer, ...]
    sync: Sync = Sync()
    admin: Admin = Admin()
    log: Log = Log()

    @field_validator("customers")
    @classmethod
    def _some(cls, value: tuple[Customer, ...]) -> tuple[Customer, ...]:
        if not value:
            raise ValueError("list at least one customer")
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unique(self) -> Config:
        names: set[str] = set()
        keys: set[str] = set()
        for customer in self.customers:
            if customer.name in names:
                raise ValueError(f"customer name '{customer.name}' is used twice")
            names.add(customer.name)
            for key in customer.keys:
                if key in keys:
                    raise ValueError(
                        f"customer '{customer.name}' shares a customer key with another entry"
                    )
                keys.add(key)
        return self

    @model_validator(mode="after")
    def _routing_keys_fit(self) -> Config:
        # The longest key a request can produce (clinic and workstation are cut to
        # ROUTING_VALUE_BYTES) must be a valid AMQP short string, else rows could never go.
        longest = "w" * ROUTING_VALUE_BYTES
        for customer in self.customers:
            key = routing_key(self.amqp.routing_key, customer.name, longest, longest)
            if len(key.encode()) > 255:
                raise ValueError(
                    f"amqp.routing_key gives keys of up to {len(key.encode())} bytes for "
                    f"customer '{customer.name}'; AMQP allows 255 (clinic and workstation "
                    f"take up to {ROUTING_VALUE_BYTES} bytes each)"
                )
        return self


def host_zone() -> Any:
    """This host's time zone: $TZ, /etc/localtime's zone name, or its current fixed offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            target = os.readlink("/etc/localtime")
            name = target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""
        except OSError:
            name = ""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    from datetime import datetime  # noqa: PLC0415 - only needed on hosts without a zone name

    return datetime.now().astimezone().tzinfo
