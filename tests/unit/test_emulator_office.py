"""The emulator's office deletes rows as Open Dental reports them: a `{Table}Deleted` row each."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator

from bridge import contract, normalize, opendental
from bridge.emulator.office import Office

T0 = datetime(2026, 11, 28, 8, 0, 0)
T1 = datetime(2026, 11, 28, 8, 5, 0)


def test_a_deleted_appointment_leaves_the_table_and_fires_as_appointment_deleted() -> None:
    office = Office()
    office.change("Appointment", 12, T0)
    before = len(office.rows["Appointment"])  # fewer than 12: a third of changes are edits
    gone = office.delete("Appointment", 3, T1)
    assert len(gone) == 3 and len(office.rows["Appointment"]) == before - 3
    numbers = {row["AptNum"] for row in gone}
    assert not numbers & set(office.rows["Appointment"])
    fired = office.changed("AppointmentDeleted", T1, T1.replace(minute=6))
    assert fired == sorted(gone, key=lambda row: row["AptNum"])  # in (stamp, key) order
    assert len({row["HistApptNum"] for row in gone}) == 3  # one history row each
    assert {row["HistDateTStamp"] for row in gone} == {"2026-11-28 08:05:00"}
    # Shaped as the sample and the schema say, whatever the appointment held.
    table = opendental.table("db", "AppointmentDeleted")
    schema = Draft202012Validator(
        contract.table_schema(table), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    ctx = normalize.Context("main-office", ZoneInfo("America/Chicago"))
    for event in normalize.events(ctx, table, None, gone, 0.0):
        schema.validate(event.data)
        assert event.time == "2026-11-28T08:05:00-06:00"
    # A deleted row is never edited again; new rows get new numbers.
    office.change("Appointment", 10, T1)
    assert not numbers & set(office.rows["Appointment"])


def test_other_tables_delete_into_their_deleted_table_with_the_stamp_moved() -> None:
    office = Office()
    office.change("PatField", 2, T0)
    [gone] = office.delete("PatField", 1, T1)
    assert gone["SecDateTEdit"] == "2026-11-28 08:05:00"
    assert list(office.rows["PatFieldDeleted"]) == [gone["PatFieldNum"]]
    assert office.delete("Provider", 1, T1) == []  # nothing to delete: nothing happens
