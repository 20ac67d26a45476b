"""What we know about Open Dental: its tables, their keys and change columns, and event types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .od_tables import SHAPES, Shape

Kind = Literal["db", "ui"]

_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
UNKNOWN = "Unknown"

# Open Dental writes date-times as office wall clock without an offset, and "never" as year 1.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
ZERO_DATE = "0001-01-01"
NEVER = f"{ZERO_DATE} 00:00:00"


def parse_datetime(value: Any) -> datetime | None:
    """An Open Dental date or date-time as a naive datetime; None for never, empty or unparsable."""
    text = str(value or "").strip().replace("T", " ")
    for fmt in (DATETIME_FORMAT, DATE_FORMAT):
        try:
            parsed = datetime.strptime(text[:19] if fmt is DATETIME_FORMAT else text, fmt)
        except ValueError:
            continue
        return None if parsed.year <= 1 else parsed
    return None


@dataclass(frozen=True, slots=True)
class Table:
    """One WatchTable or UiEventType: its primary key and the columns that say when it changed."""

    name: str
    kind: Kind
    primary_key: str | None
    change_columns: tuple[str, ...] = ()
    # The columns Open Dental sends (od_tables.py); None for a type the bridge does not know.
    shape: Shape | None = field(default=None, compare=False)

    @property
    def deletes(self) -> str | None:
        """For a `*Deleted` table, the live table whose row it deletes (by the same key)."""
        return self.name.removesuffix("Deleted") if self.name.endswith("Deleted") else None


def _db(name: str, key: str, *change: str) -> Table:
    return Table(name, "db", key, change or ("DateTStamp",), SHAPES[name])


# Every table and UI event the bridge knows, each *Deleted twin beside its live table. The
# order is only for reading (and the order exchanges are declared in); shape detection has
# its own ordered markers below.
KNOWN_TABLES: tuple[Table, ...] = (
    _db("AppointmentDeleted", "AptNum", "HistDateTStamp", "DateTStamp"),
    _db("Appointment", "AptNum"),
    _db("PatFieldDeleted", "PatFieldNum", "SecDateTEdit", "DateTStamp"),
    _db("PatField", "PatFieldNum", "SecDateTEdit"),
    _db("ToothInitialDeleted", "ToothInitialNum", "SecDateTEdit", "DateTStamp"),
    _db("ToothInitial", "ToothInitialNum", "SecDateTEdit"),
    _db("ScheduleDeleted", "ScheduleNum", "DateTStamp"),
    _db("Schedule", "ScheduleNum"),
    _db("Operatory", "OperatoryNum"),
    _db("LabCaseDeleted", "LabCaseNum", "DateTStamp", "SecDateTEdit"),
    _db("LabCase", "LabCaseNum", "DateTStamp", "SecDateTEdit"),
    _db("MedicationPatDeleted", "MedicationPatNum", "DateTStamp", "SecDateTEdit"),
    _db("MedicationPat", "MedicationPatNum", "DateTStamp", "SecDateTEdit"),
    _db("Provider", "ProvNum"),
    _db("Patient", "PatNum"),
    Table("PatientSelected", "ui", "PatNum", (), SHAPES["PatientSelected"]),
)
_BY_LOWER: dict[str, Table] = {t.name.lower(): t for t in KNOWN_TABLES}

# Body-shape detection: the key that marks each table, first match wins, so a table whose
# rows also carry another table's key comes before it (an Appointment row has PatNum and
# ProvNum). *Deleted tables are not guessed from shape (their rows look like the live
# table's); AppointmentDeleted has a marker of its own (HistApptNum).
_SHAPE_MARKERS: tuple[tuple[str, str], ...] = (
    ("HistApptNum", "AppointmentDeleted"),
    ("AptNum", "Appointment"),
    ("PatFieldNum", "PatField"),
    ("ToothInitialNum", "ToothInitial"),
    ("ScheduleNum", "Schedule"),
    ("OperatoryNum", "Operatory"),
    ("LabCaseNum", "LabCase"),
    ("MedicationPatNum", "MedicationPat"),
    ("ProvNum", "Provider"),
    ("PatNum", "Patient"),
)
_GENERIC_CHANGE_COLUMNS = ("DateTStamp", "SecDateTEdit", "HistDateTStamp", "DateTimeEdit")


def table(kind: Kind, name: str) -> Table:
    """The Table for `name` (canonical spelling if known), or a best guess for a new one."""
    known = _BY_LOWER.get(name.lower())
    if known is not None and known.kind == kind:
        return known
    if name == UNKNOWN:
        return Table(UNKNOWN, kind, None, _GENERIC_CHANGE_COLUMNS)
    base = name.removesuffix("Deleted")
    base_known = _BY_LOWER.get(base.lower())
    key = base_known.primary_key if base_known else f"{base}Num"
    return Table(name, kind, key, _GENERIC_CHANGE_COLUMNS)


def is_plain_word(name: str) -> bool:
    """True for a name safe to use as an exchange/type suffix (letters, digits, underscore)."""
    return _PLAIN_WORD.fullmatch(name) is not None


def from_header(value: str | None) -> Table | None:
    """Parse `Event-Type: WatchTable: Appointment` / `UiEventType: PatientSelected`."""
    if not value:
        return None
    word, sep, name = value.partition(":")
    if not sep:
        return None
    word, name = word.strip().lower(), name.strip()
    kind: Kind
    if word == "watchtable":
        kind = "db"
    elif word == "uieventtype":
        kind = "ui"
    else:
        return None
    if not is_plain_word(name):
        return None
    return table(kind, name)


def from_name(name: str | None) -> Table | None:
    """A known table from a path segment or `type` query, case-insensitive, minus 'event(s)'."""
    if not name:
        return None
    lowered = name.strip().lower()
    for suffix in ("events", "event"):
        if lowered.endswith(suffix) and len(lowered) > len(suffix):
            lowered = lowered[: -len(suffix)]
            break
    return _BY_LOWER.get(lowered)


def from_shape(body: Any) -> Table:
    """Guess the type from the body: an array is a database event, an object a UI event."""
    if isinstance(body, list):
        first = body[0] if body and isinstance(body[0], dict) else {}
        for marker, name in _SHAPE_MARKERS:
            if marker in first:
                return _BY_LOWER[name.lower()]
        return table("db", UNKNOWN)
    if isinstance(body, dict) and "PatNum" in body and "LName" in body:
        return _BY_LOWER["patientselected"]
    return table("ui", UNKNOWN)


def resolve(header: str | None, names: tuple[str | None, ...], body: Any) -> Table:
    """Event type, first that applies: header, path segment or query, body shape, Unknown."""
    found = from_header(header)
    if found is not None:
        return found
    for name in names:
        found = from_name(name)
        if found is not None:
            return found
    return from_shape(body)
