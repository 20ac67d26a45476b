"""The per-office configuration models: a customer, its Open Dental API and its subscriptions."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from contextlib import suppress
from typing import Annotated, Any
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

MANAGED_NOTE = "managed by od-bridge"
_NAME = re.compile(r"[a-z0-9-]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_OD_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class Model(BaseModel):
    """A configuration section: unknown keys are errors, and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def network_entry(entry: str) -> str:
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


class Api(Model):
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


class Subscription(Model):
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


class Customer(Model):
    """One dental office: its key, its time zone and the subscriptions it should have."""

    name: str
    customer_key: SecretStr
    extra_keys: tuple[SecretStr, ...] = ()
    timezone: str | None = None
    normalize: bool = True
    allowed_networks: tuple[Annotated[str, AfterValidator(network_entry)], ...] = ()
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
