"""PURE: (customer, type, headers, rows) → [Event]: envelope, typed values, deterministic ids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

from .contract import dataschema, event_type
from .event_ids import random_id, row_id
from .events import INT32_MAX, Event, Message, dumps, envelope, exchange_name
from .opendental import DATETIME_FORMAT, ZERO_DATE, Table
from .routing import routing_key


@dataclass(frozen=True, slots=True)
class Context:
    """What normalization needs to know about one customer; built once, reused per request."""

    customer: str
    zone: tzinfo
    normalize: bool = True
    routing_template: str = "{customer}.{clinic}.{workstation}"
    # Field names removed from every row's data, lower-cased: matched ignoring case so that
    # `ssn` also removes `SSN` (a redaction list should fail towards removing, not leaking).
    redact: frozenset[str] = field(default_factory=frozenset)
    # Lower-cased type name → the only field names kept in data (exact case), for that type.
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Where the daemon serves the JSON Schemas: `{public_url}/schemas`.
    schema_base: str = "http://127.0.0.1:8080/schemas"

    @property
    def source(self) -> str:
        """CloudEvents `source` of this customer's events."""
        return f"/opendental/{self.customer}"


@lru_cache(maxsize=4096)
def _datetime(value: str, zone: tzinfo) -> str | None:
    """`yyyy-MM-dd HH:mm:ss` office wall clock → RFC 3339 with the office's offset, else None."""
    try:
        parsed = datetime.strptime(value, DATETIME_FORMAT)
    except ValueError:
        return None
    return parsed.replace(tzinfo=zone).isoformat()


def value(raw: Any, zone: tzinfo) -> Any:
    """Normalize one value: booleans, zero dates → None, date-times → RFC 3339; else as sent."""
    if type(raw) is not str:
        return raw
    if raw == "true":
        return True
    if raw == "false":
        return False
    if raw.startswith(ZERO_DATE):
        return None
    if len(raw) == 19 and raw[10] == " " and raw[4] == "-":
        converted = _datetime(raw, zone)
        if converted is not None:
            return converted
    return raw


def kept_fields(ctx: Context, table: Table) -> frozenset[str] | None:
    """The allowlist of `data` fields for this type (key and change columns always), or None."""
    listed = ctx.fields.get(table.name.lower())
    if listed is None:
        return None
    # Consumers need the key and change time to make sense of a row, whatever the list says.
    always = set(table.change_columns)
    if table.primary_key:
        always.add(table.primary_key)
    return listed | always


def row_data(
    row: dict[str, Any], ctx: Context, keep: frozenset[str] | None = None
) -> dict[str, Any]:
    """The `data` of one row: every key kept (case-twins included), values normalized.

    `ctx.redact` and `keep` (from kept_fields) remove fields; redaction wins over the allowlist.
    """
    zone = ctx.zone
    redact = ctx.redact
    if redact or keep is not None:
        items = [
            (k, v)
            for k, v in row.items()
            if (keep is None or k in keep) and not (redact and k.lower() in redact)
        ]
        if not ctx.normalize:
            return dict(items)
        return {k: value(v, zone) for k, v in items}
    if not ctx.normalize:
        return row
    # `value` inlined: this loop runs for every field of every row (the hottest pure code).
    out: dict[str, Any] = {}
    for k, raw in row.items():
        if type(raw) is str:
            if raw == "true":
                out[k] = True
            elif raw == "false":
                out[k] = False
            elif raw.startswith(ZERO_DATE):
                out[k] = None
            elif len(raw) == 19 and raw[10] == " " and raw[4] == "-":
                out[k] = _datetime(raw, zone) or raw
            else:
                out[k] = raw
        else:
            out[k] = raw
    return out


def clinic_of(row: dict[str, Any]) -> int | None:
    """`odclinic`: ClinicNum as an int32 (digit strings converted), 0 if absent, else None."""
    clinic = row.get("ClinicNum", 0)
    if type(clinic) is not int:  # bool is not a clinic; neither is a float, list or None
        if not (type(clinic) is str and clinic.isascii() and clinic.isdigit()):
            return None
        clinic = int(clinic)
    return clinic if 0 <= clinic <= INT32_MAX else None


def _change_time(row: dict[str, Any], table: Table, zone: tzinfo) -> str | None:
    for column in table.change_columns:
        raw = row.get(column)
        if isinstance(raw, str) and not raw.startswith(ZERO_DATE):
            converted = _datetime(raw, zone)
            if converted is not None:
                return converted
    return None


@lru_cache(maxsize=64)
def _second(second: int, zone: tzinfo) -> tuple[str, str]:
    """'YYYY-MM-DDTHH:MM:SS' and the UTC offset of one whole second in `zone`."""
    text = datetime.fromtimestamp(second, zone).isoformat()
    return text[:19], text[19:]


def received_time(received_at: float, zone: tzinfo) -> str:
    """The time a request was received, RFC 3339 in the office's zone, to the millisecond."""
    # = datetime.fromtimestamp(received_at, zone).isoformat(timespec="milliseconds"), with the
    # zone lookup done once per second (offsets change only on whole seconds).
    second = int(received_at)
    micros = round((received_at - second) * 1_000_000)
    if micros >= 1_000_000:
        second, micros = second + 1, 0
    base, offset = _second(second, zone)
    return f"{base}.{micros // 1000:03d}{offset}"


def _facts(
    ctx: Context, table: Table, row: dict[str, Any], now: str
) -> tuple[Any, int | None, str, str]:
    """(key, clinic, id, time) of one row.

    All from the raw row: redaction and the allowlist shape only what consumers see in `data`,
    never subjects, routing or how duplicates are recognized.
    """
    key = row.get(table.primary_key) if table.primary_key else None
    clinic = clinic_of(row)
    if table.kind == "db":
        return (
            key,
            clinic,
            row_id(ctx.customer, table, row),
            _change_time(row, table, ctx.zone) or now,
        )
    return key, clinic, random_id(), now


# CloudEvents' String type excludes control characters (U+0000-U+001F, U+007F-U+009F); a
# Workstation header read as ISO-8859-1 or a text primary key may hold them.
_CONTROL = {c: "\ufffd" for c in (*range(0x20), *range(0x7F, 0xA0))}


def ce_string(text: str) -> str:
    """`text` as a CloudEvents String: each control character becomes U+FFFD."""
    return text.translate(_CONTROL)


def _subject(name: str, key: Any) -> str | None:
    if key is None:
        return None
    return f"{name}/{ce_string(key) if type(key) is str else key}"


def events(
    ctx: Context,
    table: Table,
    workstation: str | None,
    rows: list[dict[str, Any]],
    received_at: float,
) -> list[Event]:
    """One Event per row, in order."""
    workstation = ce_string(workstation) if workstation else workstation
    now = received_time(received_at, ctx.zone)
    keep = kept_fields(ctx, table)
    schema = dataschema(ctx.schema_base, table, ctx.normalize)
    out: list[Event] = []
    for row in rows:
        key, clinic, event_id, time = _facts(ctx, table, row, now)
        out.append(
            Event(
                id=event_id,
                kind=table.kind,
                table=table.name,
                source=ctx.source,
                subject=_subject(table.name, key),
                time=time,
                customer=ctx.customer,
                workstation=workstation,
                clinic=clinic,
                data=row_data(row, ctx, keep),
                routing_key=routing_key(ctx.routing_template, ctx.customer, clinic, workstation),
                received_at=received_at,
                dataschema=schema,
            )
        )
    return out


def messages(
    ctx: Context,
    table: Table,
    workstation: str | None,
    rows: list[dict[str, Any]],
    received_at: float,
    *,
    prefix: str,
    exchange: str | None = None,
) -> list[Message]:
    """One encoded Message per row, in order: `[encode(e, prefix) for e in events(...)]`.

    The same bytes, built without the intermediate Event objects (the per-row hot path).
    `exchange` overrides the type's own (a catch-all for names beyond the cap, typenames.py).
    """
    workstation = ce_string(workstation) if workstation else workstation  # once per request
    now = received_time(received_at, ctx.zone)
    name = table.name
    exchange = exchange or exchange_name(prefix, table.kind, name)
    ce_type = event_type(table)
    schema = dataschema(ctx.schema_base, table, ctx.normalize)
    source, customer, template = ctx.source, ctx.customer, ctx.routing_template
    stamp = int(received_at)
    keep = kept_fields(ctx, table)
    out: list[Message] = []
    for row in rows:
        key, clinic, event_id, time = _facts(ctx, table, row, now)
        subject = _subject(name, key)
        data = row_data(row, ctx, keep)
        body = envelope(
            event_id, source, ce_type, subject, time, schema, customer, workstation, clinic, data
        )
        out.append(
            Message(
                exchange,
                routing_key(template, customer, clinic, workstation),
                event_id,
                ce_type,
                stamp,
                dumps(body),
            )
        )
    return out
