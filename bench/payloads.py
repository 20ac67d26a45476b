"""Request bodies and headers for the load generator (shapes from the Open Dental samples)."""

from __future__ import annotations

from typing import Any

import orjson

KEY = "VzkmZEaUWOjnQX2z"

PATIENT: dict[str, Any] = {
    "PatNum": 17,
    "LName": "Doe",
    "FName": "Jane",
    "MiddleI": "Q",
    "Preferred": "Janie",
    "PatStatus": "Patient",
    "Gender": "Female",
    "Position": "Married",
    "Birthdate": "1980-04-12",
    "SSN": "000000000",
    "Address": "1 Test Way",
    "Address2": "",
    "City": "Springfield",
    "State": "OR",
    "Zip": "97477",
    "HmPhone": "(555)555-0100",
    "WkPhone": "",
    "WirelessPhone": "(555)555-0101",
    "Guarantor": 17,
    "Email": "jane@example.invalid",
    "EstBalance": 45.5,
    "PriProv": 1,
    "priProvAbbr": "DOC1",
    "SecProv": 0,
    "secProvAbbr": "",
    "BillingType": "StandardAccount",
    "ImageFolder": "DoeJane17",
    "ChartNumber": "",
    "MedicaidID": "",
    "BalTotal": 45.5,
    "DateFirstVisit": "2019-02-01",
    "ClinicNum": "0",
    "clinicAbbr": "",
    "PreferConfirmMethod": "TextMessage",
    "PreferContactMethod": "WirelessPh",
    "PreferRecallMethod": "Email",
    "Language": "",
    "siteDesc": "",
    "DateTStamp": "2026-11-28 08:35:00",
    "TxtMsgOk": "Yes",
    "SecDateEntry": "2019-02-01",
}

APPOINTMENT: dict[str, Any] = {
    "AptNum": 18,
    "PatNum": 17,
    "AptStatus": "Scheduled",
    "Pattern": "//XXXX//",
    "Confirmed": 19,
    "confirmed": "Not Called",
    "TimeLocked": "false",
    "Op": 3,
    "Note": "",
    "ProvNum": 1,
    "provAbbr": "DOC1",
    "ProvHyg": 0,
    "AptDateTime": "2026-12-02 08:30:00",
    "NextAptNum": 0,
    "UnschedStatus": 0,
    "unschedStatus": "",
    "IsNewPatient": "false",
    "ProcDescript": "Seal, Seal",
    "ClinicNum": 0,
    "IsHygiene": "false",
    "DateTStamp": "2026-11-28 08:30:12",
    "DateTimeArrived": "0001-01-01 00:00:00",
    "DateTimeSeated": "0001-01-01 00:00:00",
    "DateTimeDismissed": "0001-01-01 00:00:00",
    "InsPlan1": 0,
    "InsPlan2": 0,
    "DateTimeAskedToArrive": "0001-01-01 00:00:00",
    "colorOverride": "0,0,0",
    "AppointmentTypeNum": 0,
    "SecDateTEntry": "2026-11-20 14:02:11",
    "Priority": "Normal",
    "PatternSecondary": "",
    "ItemOrderPlanned": 0,
}


def headers(kind: str) -> dict[str, str]:
    """What Open Dental sends with a PatientSelected (`ui`) or Appointment (`db`) event."""
    event_type = "UiEventType: PatientSelected" if kind == "ui" else "WatchTable: Appointment"
    return {
        "Authorization": KEY,
        "Content-Type": "application/json; charset=utf-8",
        "Event-Type": event_type,
        "Workstation": "FRONTDESK1" if kind == "ui" else "OD-SERVER",
    }


def patient_selected(seq: int) -> bytes:
    """One PatientSelected body; PatNum = seq, so a consumer can match it to its request."""
    return orjson.dumps({**PATIENT, "PatNum": seq})


def appointments(rows: int, seq: int) -> bytes:
    """An Appointment array of `rows` distinct rows (AptNum unique per (seq, index))."""
    base = seq * rows
    return orjson.dumps([{**APPOINTMENT, "AptNum": base + i, "PatNum": seq} for i in range(rows)])


def body(kind: str, rows: int, seq: int) -> bytes:
    """`ui`: a PatientSelected object; `db`: an Appointment array of `rows` rows."""
    return patient_selected(seq) if kind == "ui" else appointments(rows, seq)
