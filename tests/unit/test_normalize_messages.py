"""normalize.messages() gives exactly the bytes of encode(events()); the fast helpers match."""

from __future__ import annotations

import hashlib
import re
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from bridge import event_ids, normalize, opendental
from bridge.events import Message, encode

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


def test_row_id_text_is_a_uuidv8() -> None:
    table = opendental.table("db", "Appointment")
    event_id = event_ids.row_id("main-office", table, APPOINTMENT)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", event_id
    )
    parsed = uuid.UUID(event_id)
    assert str(parsed) == event_id
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122


def test_deterministic_id_is_the_hash_with_version_and_variant_set() -> None:
    material = b"main-office\x1fAppointment\x1f18\x1f2026-11-28 08:30:12"
    digest = hashlib.blake2b(material, digest_size=16).digest()
    # RFC 9562 section 5.8: version in the 4 high bits of octet 6, variant 0b10 in octet 8.
    as_int = int.from_bytes(digest, "big")
    as_int &= ~(0xF000 << 64) & ~(0xC000 << 48)
    as_int |= (0x8000 << 64) | (0x8000 << 48)
    expected = str(uuid.UUID(int=as_int))
    assert event_ids.hash_id(material) == expected == "ca95ea63-5447-8ff7-bdd4-a069cfb9fde4"
    # Only those 6 bits differ from the old (pre-UUIDv8) form of the same hash.
    old = uuid.UUID(bytes=digest).int
    assert bin(old ^ uuid.UUID(expected).int).count("1") <= 6


def _kept_bytes(build: Callable[[], list[Message]]) -> tuple[int, int]:
    """(bytes newly allocated and still held by what `build` returns, their body bytes)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return grown, sum(len(m.body) for m in kept)


def test_message_bodies_hold_no_more_memory_than_their_bytes() -> None:
    # orjson hands back its output buffer (>= 4 KiB, growing fourfold) as is; messages are
    # kept until confirmed, thousands at once, so each body must be right-sized. Bodies plus
    # ids and Message objects stay well under twice the body bytes (it was ~14x before).
    table = opendental.table("db", "Appointment")
    rows = [{**APPOINTMENT, "AptNum": n} for n in range(200)]
    held, bodies = _kept_bytes(
        lambda: normalize.messages(CTX, table, "WS", rows, 1795000000.0, prefix="od")
    )
    assert held < 2 * bodies
    held, bodies = _kept_bytes(
        lambda: [encode(e, "od") for e in normalize.events(CTX, table, "WS", rows, 0.0)]
    )
    assert held < 2 * bodies
