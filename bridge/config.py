"""The configuration as frozen, validated models (pydantic v2): the daemon's sections and the whole.

The per-office models (Customer, Api, Subscription) are in config_customer; config_loader reads
the YAML.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .config_customer import Customer, Model, network_entry
from .routing import ROUTING_VALUE_BYTES, routing_key


class Tls(Model):
    """Serve HTTPS with this certificate chain and private key (PEM files)."""

    cert: Path
    key: Path


class AuthFailureLimit(Model):
    """Failed-authentication rate limit per client address (the TCP peer)."""

    max_failures: int = Field(20, ge=1)
    window_s: float = Field(60.0, gt=0, le=86_400)
    max_clients: int = Field(10_000, ge=1)  # addresses remembered at once (bounded memory)


class Listen(Model):
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


class Amqp(Model):
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


class Spool(Model):
    """The local SQLite outbox used while the broker cannot confirm."""

    enabled: bool = True
    path: Path = Path("var/spool.sqlite3")
    max_events: int = Field(1_000_000, ge=1)
    # Kept free on the spool's filesystem: rows are refused below it, so deletes still commit.
    reserve_bytes: int = Field(8 * 1024 * 1024, ge=0)


class Sync(Model):
    """How the daemon keeps the office's subscriptions in line with this file."""

    mode: Literal["off", "plan", "apply"] = "plan"
    interval_s: float = Field(300.0, ge=1)
    prune: Literal["managed", "none"] = "managed"

    @field_validator("mode", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `mode: off` as the boolean false.
        return "off" if value is False else value


class Admin(Model):
    """Where /metrics, /status and /status.json are served, and to whom."""

    listen: str | None = None  # "host:port"; unset: on the main listener, as before
    allowed_networks: tuple[Annotated[str, AfterValidator(network_entry)], ...] = ()

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


class Log(Model):
    """Log level and format (JSON lines, or text for a terminal)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Config(Model):
    """The whole od-bridge configuration."""

    listen: Listen = Listen()
    public_url: str = "http://127.0.0.1:8080"
    amqp: Amqp = Amqp()
    spool: Spool = Spool()
    customers: tuple[Customer, ...]
    sync: Sync = Sync()
    admin: Admin = Admin()
    log: Log = Log()

    @property
    def type_names(self) -> list[str]:
        """Every event-type name the offices subscribe to or allow (exchanges of their own)."""
        return [name for c in self.customers for name in (*c.allow_unknown, *c.subscribed)]

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
