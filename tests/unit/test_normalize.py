"""The normalizer: envelope per sample, typed values, deterministic ids, CloudEvents SDK oracle."""

from __future__ import annotations

import subprocess
import sys
from zoneinfo import ZoneInfo

import orjson
import pytest
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event

from bridge import event_ids, normalize, opendental, routing
from bridge.events import CONTENT_TYPE, encode
from tests.support import all_samples, sample

CHICAGO = ZoneInfo("America/Chicago")
CTX = normalize.Context(customer="main-office", zone=CHICAGO)
RECEIVED = 1_795_876_212.5  # 2026-11-28T08:30:12.5-06:00

EXPECTED = {  # sample → (type, subject of the first row, time of the first row)
    "appointment": ("com.opendental.db.Appointment", "Appointment/18", "2026-11-28T08:30:12-06:00"),
    "appointment_deleted": (
        "com.opendental.db.AppointmentDeleted",
        "AppointmentDeleted/21",
        "2026-11-28T08:41:07-06:00",
    ),
    "legacy_appointment_no_headers": (
        "com.opendental.db.Appointment",
        "Appointment/18",
        "2026-11-28T08:30:12-06:00",
    ),
    "operatory": ("com.opendental.db.Operatory", "Operatory/3", "2026-11-28T07:59:59-06:00"),
    "patfield": ("com.opendental.db.PatField", "PatField/77", "2026-11-28T08:36:10-06:00"),
    "patient": ("com.opendental.db.Patient", "Patient/17", "2026-11-28T08:35:00-06:00"),
    "patient_selected": (
        "com.opendental.ui.PatientSelected",
        "PatientSelected/17",
        "2026-11-28T08:30:12.500-06:00",
    ),
    "provider": ("com.opendental.db.Provider", "Provider/1", "2026-11-28T06:00:00-06:00"),
    "schedule": ("com.opendental.db.Schedule", "Schedule/903", "2026-11-28T08:00:00-06:00"),
    "toothinitial": (
        "com.opendental.db.ToothInitial",
        "ToothInitial/44",
        "2026-11-28T08:37:00-06:00",
    ),
}


def events_of(name: str, ctx: normalize.Context = CTX) -> list[normalize.Event]:
    delivery = sample(name)
    headers, body = delivery["headers"], delivery["body"]
    table = opendental.resolve(headers.get("Event-Type"), (), body)
    rows = body if isinstance(body, list) else [body]
    return normalize.events(ctx, table, headers.get("Workstation"), rows, RECEIVED)


def test_every_sample_has_an_expectation() -> None:
    assert set(EXPECTED) == set(all_samples())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_envelope(name: str) -> None:
    delivery = sample(name)
    body = delivery["body"]
    events = events_of(name)
    rows = body if isinstance(body, list) else [body]
    assert len(events) == len(rows)
    ce_type, subject, time = EXPECTED[name]
    envelope = events[0].envelope()
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == ce_type
    assert envelope["subject"] == subject
    assert envelope["time"] == time
    assert envelope["source"] == "/opendental/main-office"
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["odcustomer"] == "main-office"
    assert envelope["odclinic"] == 0
    workstation = delivery["headers"].get("Workstation")
    assert envelope.get("odworkstation") == workstation
    assert list(envelope["data"]) == list(rows[0])  # every key, in order
    assert list(envelope)[:4] == ["specversion", "id", "source", "type"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cloudevents_sdk_decodes_every_sample(name: str) -> None:
    for event in events_of(name):
        message = encode(event, "opendental")
        decoded = from_rabbitmq_event(
            RabbitMQMessage(headers={}, content_type=CONTENT_TYPE, body=message.body)
        )
        assert decoded.get_id() == event.id == message.message_id
        assert decoded.get_type() == event.type
        assert decoded.get_source() == event.source
        assert decoded.get_data() == orjson.loads(orjson.dumps(event.data))
        assert decoded.get_extension("odcustomer") == "main-office"


def test_values_are_normalized() -> None:
    data = events_of("appointment")[0].data
    assert data["IsNewPatient"] is False
    assert data["TimeLocked"] is False
    assert data["DateTimeArrived"] is None
    assert data["AptDateTime"] == "2026-12-02T08:30:00-06:00"
    assert data["SecDateTEntry"] == "2026-11-20T14:02:11-06:00"
    assert data["Pattern"] == "//XXXX//"
    assert data["colorOverride"] == "0,0,0"
    assert data["AptNum"] == 18
    # case-twins both survive with their own values
    assert data["Confirmed"] == 19 and data["confirmed"] == "Not Called"
    assert data["UnschedStatus"] == 0 and data["unschedStatus"] == ""
    provider = events_of("provider")[0].data
    assert provider["SigOnFile"] is True and provider["Birthdate"] is None
    patient = events_of("patient")[0].data
    assert patient["Birthdate"] == "1980-04-12"  # dates stay dates
    assert patient["AdmitDate"] is None
    assert patient["EstBalance"] == 45.5


def test_offset_follows_daylight_saving() -> None:
    assert normalize.value("2026-07-01 09:00:00", CHICAGO) == "2026-07-01T09:00:00-05:00"
    assert normalize.value("2026-12-01 09:00:00", CHICAGO) == "2026-12-01T09:00:00-06:00"
    assert normalize.value("2026-12-01 9:00", CHICAGO) == "2026-12-01 9:00"  # not ours: as sent
    assert normalize.value("2026-13-01 09:00:00", CHICAGO) == "2026-13-01 09:00:00"
    assert normalize.value("True", CHICAGO) == "True"


def test_normalize_false_passes_data_through() -> None:
    ctx = normalize.Context(customer="main-office", zone=CHICAGO, normalize=False)
    raw = sample("appointment")["body"][0]
    assert events_of("appointment", ctx)[0].data == raw
    # ids do not depend on normalization
    assert events_of("appointment", ctx)[0].id == events_of("appointment")[0].id


def test_db_ids_are_deterministic_and_distinct() -> None:
    first, second = events_of("appointment"), events_of("appointment")
    assert [e.id for e in first] == [e.id for e in second]
    assert first[0].id != first[1].id
    other = normalize.Context(customer="north-clinic", zone=CHICAGO)
    assert events_of("appointment", other)[0].id != first[0].id


def test_db_id_changes_with_row_state_only() -> None:
    table = opendental.table("db", "Appointment")
    row = dict(sample("appointment")["body"][0])
    base = event_ids.row_id("main-office", table, row)
    assert event_ids.row_id("main-office", table, {**row, "Note": "x"}) == base  # same stamp
    moved = {**row, "DateTStamp": "2026-11-28 09:00:00"}
    assert event_ids.row_id("main-office", table, moved) != base


def test_db_id_without_key_or_stamp_hashes_the_canonical_row() -> None:
    table = opendental.table("db", "Unknown")
    a = event_ids.row_id("c", table, {"x": 1, "y": "2"})
    b = event_ids.row_id("c", table, {"y": "2", "x": 1})
    c = event_ids.row_id("c", table, {"x": 1, "y": "3"})
    assert a == b != c


def test_db_ids_are_stable_across_processes() -> None:
    code = (
        "from bridge import event_ids, opendental;"
        "print(event_ids.row_id('main-office', opendental.table('db','Appointment'),"
        "{'AptNum': 18, 'DateTStamp': '2026-11-28 08:30:12'}))"
    )
    ids = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2)
    }
    assert len(ids) == 1


def test_ui_ids_are_unique_per_delivery() -> None:
    assert events_of("patient_selected")[0].id != events_of("patient_selected")[0].id


def test_routing_key_sanitizes_values() -> None:
    template = "{customer}.{clinic}.{workstation}"
    assert routing.routing_key(template, "c", 0, None) == "c.0._"
    assert routing.routing_key(template, "c", 4, "A.B*#") == "c.4.A_B__"
    event = events_of("patient_selected")[0]
    assert event.routing_key == "main-office.0.FRONTDESK1"
    assert event.clinic == 0  # "0" string in the UI sample becomes the number


def test_routing_keys_stay_publishable_whatever_the_row_or_header_holds() -> None:
    template = "{customer}.{clinic}.{workstation}"
    long = routing.routing_key(template, "c", "9" * 300, "É" * 300)
    assert long == "c." + "9" * 64 + "." + "É" * 32  # 64 bytes each, never half a character
    assert len(long.encode()) <= 255
    # A row's ClinicNum can be any JSON value; it must not break the request (was a 500).
    assert routing.routing_key(template, "c", [1, 2], None) == "c.[1, 2]._"
    assert routing.routing_key(template, "c", {"a": 1}, "W") == "c.{'a': 1}.W"
    # No clinic (None: normalize found no int32 ClinicNum) is 0, as documented, never "None".
    assert routing.routing_key(template, "c", None, "W") == "c.0.W"


@pytest.mark.parametrize(
    ("clinic", "expected"),
    [
        (3, 3),
        ("7", 7),
        ("0", 0),
        (2**31 - 1, 2**31 - 1),
        (2**31, None),  # outside CloudEvents' int32
        ("99999999999", None),
        (-1, None),
        ("-1", None),
        (3.0, None),  # a float made the JS SDK throw (issue 14)
        (True, None),
        (None, None),
        ("²", None),  # str.isdigit() says yes; int() says no
        ("abc", None),
        ([1], None),
    ],
)
def test_odclinic_is_an_int32_or_left_out(clinic: object, expected: int | None) -> None:
    row = {**sample("appointment")["body"][0], "ClinicNum": clinic}
    table = opendental.table("db", "Appointment")
    [event] = normalize.events(CTX, table, "W", [row], RECEIVED)
    body = orjson.loads(encode(event, "od").body)
    assert event.clinic == expected
    assert body.get("odclinic") == expected
    assert ("odclinic" in body) is (expected is not None)
    assert event.routing_key == f"main-office.{0 if expected is None else expected}.W"
    assert "None" not in event.routing_key


def test_odclinic_absent_is_zero() -> None:
    row = {k: v for k, v in sample("appointment")["body"][0].items() if k != "ClinicNum"}
    [event] = normalize.events(CTX, opendental.table("db", "Appointment"), None, [row], RECEIVED)
    assert event.clinic == 0 and event.routing_key == "main-office.0._"


def test_extensions_and_subject_are_cloudevents_strings() -> None:
    """Control characters (a tab, C1 codes from a header read as ISO-8859-1) become U+FFFD."""
    row = {**sample("schedule")["body"][0], "ScheduleNum": "9\x0103"}
    table = opendental.table("db", "Schedule")
    [event] = normalize.events(CTX, table, "OD\tSERVER\x85", [row], RECEIVED)
    [message] = normalize.messages(CTX, table, "OD\tSERVER\x85", [row], RECEIVED, prefix="od")
    body = orjson.loads(message.body)
    assert event.workstation == body["odworkstation"] == "OD\ufffdSERVER\ufffd"
    assert event.subject == body["subject"] == "Schedule/9\ufffd03"
    assert event.routing_key == message.routing_key == "main-office.0.OD\ufffdSERVER\ufffd"
    assert event.id == message.message_id  # ids are still computed from the raw row
