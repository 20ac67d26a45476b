"""Event-type resolution: header → path/query → body shape → Unknown."""

from __future__ import annotations

import pytest

from bridge import opendental
from tests.support import sample

APPT = sample("appointment")["body"]
SELECTED = sample("patient_selected")["body"]


@pytest.mark.parametrize(
    ("header", "names", "body", "kind", "name"),
    [
        ("WatchTable: Appointment", (), APPT, "db", "Appointment"),
        ("WatchTable:appointment", (), APPT, "db", "Appointment"),
        ("UiEventType: PatientSelected", (), SELECTED, "ui", "PatientSelected"),
        ("WatchTable: Commlog", (), [{"CommlogNum": 1}], "db", "Commlog"),
        ("UiEventType: ChartOpened", (), {}, "ui", "ChartOpened"),
        # header and path disagree: the header wins
        ("WatchTable: Patient", ("Appointment", None), APPT, "db", "Patient"),
        # not a plain word: ignored, the next rule applies
        ("WatchTable: ../../etc", ("appointmentevent", None), [], "db", "Appointment"),
        ("Bogus: Appointment", (None, "patient"), [], "db", "Patient"),
        (None, ("appointmentevent", None), [], "db", "Appointment"),
        (None, ("AppointmentEvents", None), [], "db", "Appointment"),
        (None, ("PATFIELD", None), [], "db", "PatField"),
        (None, (None, "patientselected"), {}, "ui", "PatientSelected"),
        (None, ("apievents-unknown", "Schedule"), [], "db", "Schedule"),
        (None, ("event", None), APPT, "db", "Appointment"),  # 'event' alone names nothing
        (None, (), APPT, "db", "Appointment"),
        (None, (), sample("appointment_deleted")["body"], "db", "AppointmentDeleted"),
        (None, (), sample("patient")["body"], "db", "Patient"),
        (None, (), sample("patfield")["body"], "db", "PatField"),
        (None, (), sample("operatory")["body"], "db", "Operatory"),
        (None, (), sample("provider")["body"], "db", "Provider"),
        (None, (), sample("schedule")["body"], "db", "Schedule"),
        (None, (), sample("toothinitial")["body"], "db", "ToothInitial"),
        (None, (), SELECTED, "ui", "PatientSelected"),
        (None, (), [{"Foo": 1}], "db", "Unknown"),
        (None, (), [], "db", "Unknown"),
        (None, (), {"Foo": 1}, "ui", "Unknown"),
    ],
)
def test_resolution_matrix(
    header: str | None, names: tuple[str | None, ...], body: object, kind: str, name: str
) -> None:
    table = opendental.resolve(header, names, body)
    assert (table.kind, table.name) == (kind, name)


def test_new_tables_get_a_guessed_key() -> None:
    assert opendental.table("db", "Commlog").primary_key == "CommlogNum"
    assert opendental.table("db", "PatFieldDeleted").primary_key == "PatFieldNum"
    assert opendental.table("db", "FooDeleted").primary_key == "FooNum"


def test_every_known_table_has_a_key() -> None:
    for table in opendental.KNOWN_TABLES:
        assert table.primary_key
