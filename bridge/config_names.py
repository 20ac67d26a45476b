"""Open Dental names in the configuration (tables, event types, fields) checked against what the
bridge knows, so that a typo cannot quietly switch a filter or a subscription off."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from .config import Config
from .config_customer import Customer
from .opendental import KNOWN_TABLES, UNKNOWN, Table

_NEWER = "if it is newer than this bridge, add it to allow_unknown"


def columns(table: Table) -> frozenset[str]:
    """The column names Open Dental sends for a known table (od_tables describes every one)."""
    assert table.shape is not None
    return frozenset(column.name for column in table.shape.columns)


# Known tables and event types by lower-cased name, and every known column, lower-cased → as
# sent (redact matches ignoring case).
_TABLES = {
    kind: {t.name.lower(): t for t in KNOWN_TABLES if t.kind == kind} for kind in ("db", "ui")
}
_EVERY = {t.name.lower(): t for t in KNOWN_TABLES}
_ALL_COLUMNS = {name.lower(): name for t in KNOWN_TABLES for name in columns(t)}


def _hint(name: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'X'?)` for the closest candidate (case first), else ''."""
    by_lower = {c.lower(): c for c in candidates}
    if name.lower() in by_lower:
        return f" (did you mean '{by_lower[name.lower()]}'?)"
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


def _customer(customer: Customer, where: str) -> list[str]:
    allowed = {name.lower() for name in customer.allow_unknown}
    exact_allowed = set(customer.allow_unknown)
    problems = []
    for i, sub in enumerate(customer.subscriptions):
        kind, key = ("db", "watch_table") if sub.watch_table else ("ui", "ui_event_type")
        known = _TABLES[kind]
        if sub.name.lower() not in known and sub.name.lower() not in allowed:
            what = "WatchTable" if kind == "db" else "UiEventType"
            hint = _hint(sub.name, (t.name for t in known.values()))
            problems.append(
                f"{where}.subscriptions[{i}].{key}: '{sub.name}' is not a {what} this bridge "
                f"knows{hint}; {_NEWER}"
            )
    for type_name, names in customer.fields.items():
        table = _EVERY.get(type_name.lower())
        if table is None:
            if type_name.lower() not in allowed and type_name != UNKNOWN:
                hint = _hint(type_name, (t.name for t in _EVERY.values()))
                problems.append(
                    f"{where}.fields.{type_name}: not an Open Dental table or event type this "
                    f"bridge knows{hint}; {_NEWER}"
                )
            continue
        known_columns = columns(table)
        for name in names:  # kept fields match exactly: `lname` would drop LName
            if name not in known_columns and name not in exact_allowed:
                problems.append(
                    f"{where}.fields.{type_name}: '{name}' is not a field of {table.name}"
                    f"{_hint(name, known_columns)}; {_NEWER}"
                )
    for name in customer.redact:  # redaction ignores case
        if name.lower() not in _ALL_COLUMNS and name.lower() not in allowed:
            problems.append(
                f"{where}.redact: '{name}' is not a field of any table this bridge knows"
                f"{_hint(name, _ALL_COLUMNS.values())}; {_NEWER}"
            )
    return problems


def problems(config: Config) -> list[str]:
    """Every unknown table, event type or field name in `config`, as `path: reason` lines."""
    out: list[str] = []
    for i, customer in enumerate(config.customers):
        out += _customer(customer, f"customers[{i}]")
    return out
