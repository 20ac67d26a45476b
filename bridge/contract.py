"""PURE: the event contract: schema names, `dataschema` URLs, JSON Schemas built from od_tables."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import orjson

from .events import TYPE_PREFIX
from .od_tables import NUMERIC_STRINGS, ColumnKind, Shape
from .opendental import KNOWN_TABLES, Table

SCHEMA_VERSION = "v1"  # a breaking change of any schema moves every type to v2
DIALECT = "https://json-schema.org/draft/2020-12/schema"
GENERIC = "unknown"  # the schema of a type the bridge does not know (any object)
RAW = "raw"  # folder of the schemas for customers with `normalize: false`

_DATE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"  # a prefix: tolerant of a date sent with a time
_RAW_DATETIME = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"
_RFC3339 = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})$"
_NORMALIZED: dict[ColumnKind, dict[str, Any]] = {
    "int": {"type": "integer"},
    "num": {"type": "number"},
    # normalize converts by value, not by column (the hot path knows no columns): a text that
    # reads "true"/"false" becomes a boolean, one starting 0001-01-01 null. Said so, not hidden.
    "text": {"type": ["string", "boolean", "null"]},
    "bool": {"type": "boolean"},
    "date": {"type": ["string", "null"], "pattern": _DATE},
    "datetime": {"type": ["string", "null"], "format": "date-time", "pattern": _RFC3339},
    "time": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"},
    "color": {"type": "string", "pattern": "^[0-9]{1,3},[0-9]{1,3},[0-9]{1,3}$"},
    "intish": {"type": ["integer", "string"], "pattern": "^-?[0-9]+$"},
    "decimal": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"},
    "code": {"type": ["integer", "string"]},
}
_RAW: dict[ColumnKind, dict[str, Any]] = {
    **_NORMALIZED,
    "text": {"type": "string"},
    "bool": {"type": "string", "enum": ["true", "false"]},
    "date": {"type": "string", "pattern": _DATE},
    "datetime": {"type": "string", "pattern": _RAW_DATETIME},
}
_NOTES: dict[ColumnKind, str] = {
    "date": "yyyy-MM-dd; null for Open Dental's no-date 0001-01-01",
    "datetime": "RFC 3339 with the office's UTC offset; null for 0001-01-01 00:00:00",
    "intish": "an integer, sent as a string of digits by some versions",
    "decimal": "a number sent as a string",
    "code": "an id, or its name in some versions",
}


def schema_name(table: Table) -> str:
    """The file name (without .json) of a type's schema: its lower-case name, or `unknown`."""
    return table.name.lower() if table.shape is not None else GENERIC


def _file(name: str, normalized: bool) -> str:
    folder = SCHEMA_VERSION if normalized else f"{SCHEMA_VERSION}/{RAW}"
    return f"{folder}/{name}.json"


def schema_path(table: Table, normalized: bool = True) -> str:
    """`v1/appointment.json`, or `v1/raw/appointment.json` for `normalize: false`."""
    return _file(schema_name(table), normalized)


def dataschema(base: str, table: Table, normalized: bool = True) -> str:
    """The CloudEvents `dataschema` of a type: `{base}/v1/appointment.json`."""
    return f"{base}/{schema_path(table, normalized)}"


def event_type(table: Table) -> str:
    """The CloudEvents type of a table's events."""
    return f"{TYPE_PREFIX}.{table.kind}.{table.name}"


def _column_schema(kind: ColumnKind, normalized: bool) -> dict[str, Any]:
    out = dict((_NORMALIZED if normalized else _RAW)[kind])
    note = _NOTES.get(kind)
    if note and (normalized or kind in NUMERIC_STRINGS or kind == "code"):
        out["description"] = note
    return out


def _description(table: Table, shape: Shape, normalized: bool) -> str:
    parts = [f"`data` of {event_type(table)}: primary key {table.primary_key}"]
    if table.change_columns:
        parts.append(f"change column {' / '.join(table.change_columns)} (the first present)")
    if table.deletes:
        parts.append(f"deletes the {table.deletes} row with the same {table.primary_key}")
    if shape.note:
        parts.append(shape.note)
    origin = "Open Dental's documented example" if shape.documented else "the matching GET"
    parts.append(f"columns from {origin}; unknown extra fields are allowed")
    if normalized:
        parts.append(
            "values are converted by what they read, not by column: a text that reads "
            "true/false arrives as a boolean, one starting 0001-01-01 as null"
        )
    return "; ".join(parts) + "."


def table_schema(table: Table, normalized: bool = True) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one known type's `data`."""
    shape = table.shape
    if shape is None:
        return generic_schema(normalized)
    out: dict[str, Any] = {
        "$schema": DIALECT,
        "title": f"{table.name} ({'normalized' if normalized else 'raw'})",
        "description": _description(table, shape, normalized),
        "type": "object",
        "properties": {c.name: _column_schema(c.kind, normalized) for c in shape.columns},
        "required": [c.name for c in shape.columns if c.required],
        "additionalProperties": True,
        "x-primary-key": table.primary_key,
        "x-change-columns": list(table.change_columns),
    }
    if table.deletes:
        out["x-deletes"] = table.deletes
    numeric = [c.name for c in shape.columns if c.kind in NUMERIC_STRINGS]
    if numeric:
        out["x-numeric-strings"] = numeric
    return out


def generic_schema(normalized: bool = True) -> dict[str, Any]:
    """The schema of a type the bridge does not know: any object."""
    return {
        "$schema": DIALECT,
        "title": f"a type the bridge does not know ({'normalized' if normalized else 'raw'})",
        "description": "The row or UI object as sent; only its primary key is guessed.",
        "type": "object",
        "additionalProperties": True,
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file under bridge/schemas: relative path → schema."""
    out: dict[str, dict[str, Any]] = {}
    for normalized in (True, False):
        for table in KNOWN_TABLES:
            out[schema_path(table, normalized)] = table_schema(table, normalized)
        out[_file(GENERIC, normalized)] = generic_schema(normalized)
    return out


def render(schema: dict[str, Any]) -> bytes:
    """A schema as its file's bytes: indented JSON, key order kept, newline at the end."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n"


PATHS = frozenset(all_schemas())  # every schema file's path under bridge/schemas


def shipped(path: str) -> bytes:
    """The bytes of a schema file shipped in the package (`path` one of PATHS)."""
    if path not in PATHS:
        raise KeyError(path)  # never another file, whatever a caller passes
    return files("bridge").joinpath("schemas", *path.split("/")).read_bytes()
