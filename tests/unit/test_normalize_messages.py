"""normalize.messages() gives exactly the bytes of encode(events()); the fast helpers match."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from bridge import normalize, opendental
from bridge.events import encode

ZONE = ZoneInfo("America/Chicago")
CTX = normalize.Context(customer="main-office", zone=ZONE)
APPOINTMENT = {
    "AptNum": 18,
    "PatNum": 17,
    "Confirmed": 19,
    "confirmed": "Not Called",
    "TimeLocked": "false",
    "IsNewPatient": "true",
    "AptDateTime": "2026-12-02 08:30:00",
    "ClinicNum": "3",
    "DateTStamp": "2026-11-28 08:30:12",
    "DateTimeArrived": "0001-01-01 00:00:00",
    "Birthdate": "0001-01-01",
    "Odd": "2026-13-45 99:99:99",
    "Note": "a.b*c#d",
}
PATIENT = {"PatNum": 17, "LName": "Doe", "ClinicNum": "0", "DateTStamp": "2026-11-28 08:35:00"}


def _ids_blanked(body: bytes) -> dict[str, object]:
    doc = orjson.loads(body)
    doc["id"] = "-"
    return doc


def test_db_rows_same_bytes_as_events_then_encode() -> None:
    table = opendental.table("db", "Appointment")
    rows = [APPOINTMENT, {**APPOINTMENT, "AptNum": 19, "DateTStamp": ""}, {"Foo": 1}]
    for workstation in ("OD-SERVER", None):
        fast = normalize.messages(CTX, table, workstation, rows, 1795000000.1234, prefix="od")
        slow = [
            encode(e, "od")
            for e in normalize.events(CTX, table, workstation, rows, 1795000000.1234)
        ]
        assert fast == slow


def test_ui_event_same_envelope_and_fresh_ids() -> None:
    table = opendental.table("ui", "PatientSelected")
    fast = normalize.messages(
        CTX, table, "FRONT.DESK", [PATIENT, PATIENT], 1795000000.5, prefix="od"
    )
    slow = [
        encode(e, "od") for e in normalize.events(CTX, table, "FRONT.DESK", [PATIENT], 1795000000.5)
    ]
    assert _ids_blanked(fast[0].body) == _ids_blanked(slow[0].body)
    assert fast[0].routing_key == slow[0].routing_key == "main-office.0.FRONT_DESK"
    assert fast[0].message_id != fast[1].message_id
    for message in fast:
        parsed = uuid.UUID(message.message_id)
        assert parsed.version == 4 and str(parsed) == message.message_id


def test_received_time_matches_datetime() -> None:
    for t in (1795000000.0, 1795000000.0005, 1795000000.9999996, 1772870399.999, 1773000000.25):
        expected = datetime.fromtimestamp(t, ZONE).isoformat(timespec="milliseconds")
        assert normalize.received_time(t, ZONE) == expected


def test_row_id_text_is_a_uuid() -> None:
    table = opendental.table("db", "Appointment")
    event_id = normalize.row_id("main-office", table, APPOINTMENT)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", event_id)
    assert str(uuid.UUID(event_id)) == event_id


def test_deterministic_id_text_unchanged() -> None:
    material = b"main-office\x1fAppointment\x1f18\x1f2026-11-28 08:30:12"
    digest = hashlib.blake2b(material, digest_size=16).digest()
    assert normalize._uuid(material) == str(uuid.UUID(bytes=digest))
