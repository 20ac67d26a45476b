"""The emulator's simulated office: invented rows shaped like Open Dental's, and counters."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..opendental import DATETIME_FORMAT, KNOWN_TABLES, NEVER, table

DB_TABLES = tuple(t.name for t in KNOWN_TABLES if t.kind == "db")
# Compact invented rows read better as a block than one field per line.
# fmt: off
DEFAULT_TABLES = (
    "Appointment", "Patient", "PatField", "Operatory", "Provider", "Schedule", "ToothInitial",
)
_FIRST = ("Ada", "Ben", "Cleo", "Dov", "Eli", "Fay", "Gus", "Hana", "Ivo", "June")
_LAST = ("Testa", "Sample", "Mock", "Fixture", "Dummy", "Placeholder")
Row = dict[str, Any]


def _appointment(n: int, r: random.Random) -> Row:
    return {
        "AptNum": n, "PatNum": 1 + n % 50,
        "AptStatus": r.choice(("Scheduled", "Complete", "Broken")), "Pattern": "//XXXX//",
        "Confirmed": 19, "confirmed": "Not Called", "TimeLocked": "false",
        "Op": 1 + n % 4, "Note": "", "ProvNum": 1, "provAbbr": "DOC1", "ProvHyg": 0,
        "AptDateTime": f"2026-12-{1 + n % 28:02d} {8 + n % 9:02d}:30:00", "NextAptNum": 0,
        "UnschedStatus": 0, "unschedStatus": "", "IsNewPatient": "false",
        "ProcDescript": "Seal, Seal", "ClinicNum": n % 3, "IsHygiene": "false",
        "DateTStamp": NEVER, "DateTimeArrived": NEVER,
        "DateTimeSeated": NEVER, "DateTimeDismissed": NEVER, "InsPlan1": 0, "InsPlan2": 0,
        "DateTimeAskedToArrive": NEVER, "colorOverride": "0,0,0", "AppointmentTypeNum": 0,
        "SecDateTEntry": "2026-11-20 14:02:11", "Priority": "Normal", "PatternSecondary": "",
        "ItemOrderPlanned": 0,
    }


def _patient(n: int, r: random.Random) -> Row:
    first, last = _FIRST[n % len(_FIRST)], _LAST[n % len(_LAST)]
    return {
        "PatNum": n, "LName": last, "FName": first, "MiddleI": "", "Preferred": "",
        "PatStatus": "Patient", "Gender": r.choice(("Female", "Male", "Unknown")),
        "Position": "Single",
        "Birthdate": f"19{50 + n % 50}-0{1 + n % 9}-1{n % 10}", "SSN": "000000000",
        "Address": f"{n} Test Way", "Address2": "", "City": "Springfield", "State": "OR",
        "Zip": "97477",
        "HmPhone": "(555)555-0100", "WkPhone": "", "WirelessPhone": "(555)555-0101", "Guarantor": n,
        "Email": f"{first.lower()}{n}@example.invalid", "EstBalance": round(r.random() * 200, 2),
        "PriProv": 1, "priProvAbbr": "DOC1", "SecProv": 0, "secProvAbbr": "", "FeeSched": 0,
        "BillingType": 41, "ImageFolder": f"{last}{first}{n}", "ChartNumber": "", "MedicaidID": "",
        "BalTotal": 0.0, "DateFirstVisit": "2019-02-01", "ClinicNum": n % 3, "clinicAbbr": "",
        "Premed": "false", "Language": "", "AdmitDate": "0001-01-01", "DateTStamp": NEVER,
        "TxtMsgOk": "Yes", "SecDateEntry": "2019-02-01",
    }


def _simple(pk: str, **fields: Any) -> Callable[[int, random.Random], Row]:
    def make(n: int, r: random.Random) -> Row:
        return {pk: n, **{k: (v(n, r) if callable(v) else v) for k, v in fields.items()}}

    return make


_GENERATORS: dict[str, Callable[[int, random.Random], Row]] = {
    "Appointment": _appointment,
    "Patient": _patient,
    "PatField": _simple("PatFieldNum", PatNum=lambda n, r: 1 + n % 50, FieldName="Referral",
                        FieldValue=lambda n, r: r.choice(("Web", "Friend", "Ad")),
                        SecDateEntry="2026-11-01", SecDateTEdit=NEVER),
    "Operatory": _simple("OperatoryNum", OpName=lambda n, r: f"Op {n}", Abbrev=lambda n, r: f"O{n}",
                         ItemOrder=0, IsHidden="false", ProvDentist=1, ProvHygienist=0,
                         IsHygiene="false", ClinicNum=0, SetProspective="false", IsWebSched="true",
                         OperatoryType=0, operatoryType="", DateTStamp=NEVER),
    "Provider": _simple("ProvNum", Abbr=lambda n, r: f"DOC{n}", LName="Smile", FName="Sam", MI="",
                        Suffix="DDS", FeeSched=53, IsSecondary="false", provColor="255,128,0",
                        IsHidden="false", DateTStamp=NEVER, ProvStatus="Active",
                        Birthdate="0001-01-01"),
    "Schedule": _simple("ScheduleNum", SchedDate="2026-12-02", StartTime="08:00:00",
                        StopTime="17:00:00", SchedType="Provider", ProvNum="1", BlockoutType="0",
                        blockoutType="", Note="", operatories="3,4", EmployeeNum="0",
                        DateTStamp=NEVER),
    "ToothInitial": _simple("ToothInitialNum", PatNum=lambda n, r: 1 + n % 50,
                            ToothNum=lambda n, r: str(1 + n % 32), InitialType="Missing",
                            Movement="0", DrawingSegment="", ColorDraw="0,0,0",
                            SecDateTEntry="2026-11-28 08:37:00", SecDateTEdit=NEVER, DrawText=""),
}
# fmt: on


def make_row(name: str, n: int, stamp: str, r: random.Random) -> Row:
    """A row of table `name` with primary key `n`, every change column set to `stamp`."""
    info = table("db", name)
    base = name.removesuffix("Deleted")
    gen = _GENERATORS.get(base)
    row: Row = gen(n, r) if gen else {info.primary_key or f"{base}Num": n}
    if name == "AppointmentDeleted":
        row = {
            "HistApptNum": 10_000 + n,
            "HistUserNum": 4,
            "HistDateTStamp": stamp,
            "HistApptAction": "Deleted",
            "ApptSource": "None",
            **row,
        }
    if name == "Schedule":
        row["ScheduleNum"] = str(n)  # Schedule's numbers arrive as strings
    for col in info.change_columns[:2] if gen is None else info.change_columns:
        row[col] = stamp
    return row


def deleted_row(name: str, live: Row, stamp: str, hist_num: int) -> Row:
    """The `{name}Deleted` row Open Dental reports when a row of `name` is deleted at `stamp`."""
    if name == "Appointment":  # a history row: Hist* columns, then the appointment as it was
        history = {"HistApptNum": hist_num, "HistUserNum": 4, "HistDateTStamp": stamp}
        extra = {"HistApptAction": "Deleted", "ApptSource": "None"}
        return {**history, **extra, **live, "DateTStamp": stamp}
    info = table("db", f"{name}Deleted")
    stamps = {c: stamp for c in info.change_columns if c in live or c == info.change_columns[0]}
    return {**live, **stamps}


class Office:
    """A simulated office database: rows per table, each with its latest state and stamp."""

    def __init__(self, seed: int = 4) -> None:
        self.rows: dict[str, dict[int, tuple[datetime, Row]]] = {}
        self.changes: dict[str, int] = {}
        self._rand = random.Random(seed)  # noqa: S311 - invented test data, not secrets
        self._next: dict[str, int] = {}
        self._history = 500  # HistApptNum of the last deletion

    def change(self, name: str, n: int, now: datetime) -> list[Row]:
        """Insert or update `n` rows of table `name` at office time `now`; the new states."""
        rows = self.rows.setdefault(name, {})
        out = []
        for _ in range(n):
            # Two thirds new rows, one third edits of existing ones (so coalescing happens).
            if rows and self._rand.random() < 1 / 3:
                pk = self._rand.choice(list(rows))
            else:
                pk = self._next.get(name, 1)
                self._next[name] = pk + 1
            row = make_row(name, pk, now.strftime(DATETIME_FORMAT), self._rand)
            rows[pk] = (now, row)
            out.append(row)
        self.changes[name] = self.changes.get(name, 0) + n
        return out

    def delete(self, name: str, n: int, now: datetime) -> list[Row]:
        """Delete `n` random rows of table `name`: each becomes a `{name}Deleted` row at `now`."""
        rows = self.rows.get(name, {})
        gone = self._rand.sample(sorted(rows), min(n, len(rows)))
        deleted = self.rows.setdefault(f"{name}Deleted", {})
        out = []
        for pk in gone:
            _, live = rows.pop(pk)
            self._history += 1
            row = deleted_row(name, live, now.strftime(DATETIME_FORMAT), self._history)
            deleted[pk] = (now, row)
            out.append(row)
        self.changes[f"{name}Deleted"] = self.changes.get(f"{name}Deleted", 0) + len(out)
        return out

    def changed(self, name: str, start: datetime, end: datetime) -> list[Row]:
        """Rows of `name` whose change stamp lies in [start, end), oldest first."""
        found = [
            (ts, pk, row) for pk, (ts, row) in self.rows.get(name, {}).items() if start <= ts < end
        ]
        return [row for _, _, row in sorted(found, key=lambda t: (t[0], t[1]))]

    def patient(self, pat_num: int) -> Row:
        """The PatientSelected object for `pat_num` (a known patient, or an invented one)."""
        known = self.rows.get("Patient", {}).get(pat_num)
        return dict(known[1]) if known else _patient(pat_num, self._rand)


@dataclass
class Counters:
    """What the emulator sent, and what the receiver acknowledged with 200."""

    posts_sent: int = 0
    posts_ok: int = 0
    posts_failed: int = 0
    rows_sent: int = 0
    rows_acked: int = 0
    ui_sent: int = 0
    ui_acked: int = 0
    ui_failed: int = 0
    by_table: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, name: str, what: str, n: int) -> None:
        """Count `n` rows of table `name` as changed / sent / acked."""
        slot = self.by_table.setdefault(name, {"changed": 0, "sent": 0, "acked": 0})
        slot[what] += n
