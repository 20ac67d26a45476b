"""PURE data: the columns of every known Open Dental table and UI event, with their value kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How Open Dental sends a column (see README "Writing a consumer" for what each becomes):
#   int      a JSON integer              num     a JSON number (money)
#   text     a string                    bool    "true" / "false"
#   date     "yyyy-MM-dd" (0001-01-01 = none)      datetime  "yyyy-MM-dd HH:mm:ss" (wall clock)
#   time     "HH:mm:ss"                  color   "R,G,B"
#   intish   an integer that may arrive as a string of digits ("903")
#   decimal  a number sent as a string ("0", "1.5")
#   code     an integer id or, in some versions, its name ("StandardAccount")
ColumnKind = Literal[
    "int", "num", "text", "bool", "date", "datetime", "time", "color", "intish", "decimal", "code"
]
NUMERIC_STRINGS: frozenset[ColumnKind] = frozenset({"intish", "decimal"})


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table's rows: its name, how it is sent, whether every version sends it."""

    name: str
    kind: ColumnKind
    required: bool = False


@dataclass(frozen=True, slots=True)
class Shape:
    """The rows of one table: columns in Open Dental's order, and notes for consumers."""

    columns: tuple[Column, ...]
    documented: bool = False  # True: shape from an event example in Open Dental's docs
    note: str = ""


def _shape(spec: str, required: str = "", *, documented: bool = False, note: str = "") -> Shape:
    """`spec` is 'Name:kind Name:kind …' in Open Dental's order; `required` names columns."""
    needed = set(required.split())
    columns = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        columns.append(Column(name, kind, name in needed))  # type: ignore[arg-type]
    missing = needed - {c.name for c in columns}
    assert not missing, missing  # a typo in this file, caught at import
    return Shape(tuple(columns), documented, note)


def _optional(shape: Shape, keep: str, note: str) -> Shape:
    """The same columns, all optional except `keep`: a *Deleted table's unconfirmed shape."""
    kept = set(keep.split())
    return Shape(tuple(Column(c.name, c.kind, c.name in kept) for c in shape.columns), False, note)


# fmt: off
APPOINTMENT = _shape(
    "AptNum:int PatNum:int AptStatus:text Pattern:text Confirmed:int confirmed:text"
    " TimeLocked:bool Op:int Note:text ProvNum:int provAbbr:text ProvHyg:int"
    " AptDateTime:datetime NextAptNum:int UnschedStatus:int unschedStatus:text"
    " IsNewPatient:bool ProcDescript:text ClinicNum:int IsHygiene:bool DateTStamp:datetime"
    " DateTimeArrived:datetime DateTimeSeated:datetime DateTimeDismissed:datetime InsPlan1:int"
    " InsPlan2:int DateTimeAskedToArrive:datetime colorOverride:color AppointmentTypeNum:int"
    " SecDateTEntry:datetime Priority:text PatternSecondary:text ItemOrderPlanned:int",
    # Open Dental's documented example; the later additions (AppointmentTypeNum onwards,
    # DateTimeAskedToArrive, colorOverride) differ between versions and stay optional.
    "AptNum PatNum AptStatus Pattern Confirmed TimeLocked Op Note ProvNum ProvHyg AptDateTime"
    " NextAptNum UnschedStatus IsNewPatient ProcDescript ClinicNum IsHygiene DateTStamp"
    " DateTimeArrived DateTimeSeated DateTimeDismissed InsPlan1 InsPlan2",
    documented=True,
)
_HISTORY = _shape(
    "HistApptNum:int HistUserNum:int HistDateTStamp:datetime HistApptAction:text ApptSource:text"
)
APPOINTMENT_DELETED = Shape(
    tuple(Column(c.name, c.kind, c.name != "HistUserNum") for c in _HISTORY.columns[:4])
    + _HISTORY.columns[4:]
    + tuple(Column(c.name, c.kind, c.name == "AptNum") for c in APPOINTMENT.columns)
    + (Column("SecUserNumEntry", "int"),),
    note="a history row (HistApptAction = Deleted) of the deleted appointment: delete by AptNum",
)
PATIENT_COLUMNS = (
    "PatNum:int LName:text FName:text MiddleI:text Preferred:text PatStatus:text Gender:text"
    " Position:text Birthdate:date SSN:text Address:text Address2:text City:text State:text"
    " Zip:text HmPhone:text WkPhone:text WirelessPhone:text Guarantor:int Email:text EstBalance:num"
    " PriProv:int priProvAbbr:text SecProv:int secProvAbbr:text FeeSched:int BillingType:int"
    " ImageFolder:text FamFinUrgNote:text ChartNumber:text MedicaidID:text BalTotal:num"
    " EmployerNum:int DateFirstVisit:date ClinicNum:int clinicAbbr:text Premed:bool Ward:text"
    " PreferConfirmMethod:text PreferContactMethod:text PreferRecallMethod:text Language:text"
    " AdmitDate:date siteDesc:text DateTStamp:datetime SuperFamily:int TxtMsgOk:text"
    " SecDateEntry:date"
)
PATIENT = _shape(PATIENT_COLUMNS, "PatNum DateTStamp")
# The UI event's object: the selected patient, with ClinicNum as a string and BillingType by
# name in the documented example (older offices send the numbers).
PATIENT_SELECTED = _shape(
    PATIENT_COLUMNS.replace("BillingType:int", "BillingType:code").replace(
        "ClinicNum:int", "ClinicNum:intish"
    ),
    "PatNum LName FName",
    documented=True,
    note="state, not history: who is open on which workstation now",
)
PAT_FIELD = _shape(
    "PatFieldNum:int PatNum:int FieldName:text FieldValue:text SecDateEntry:date"
    " SecDateTEdit:datetime",
    "PatFieldNum SecDateTEdit",
)
OPERATORY = _shape(
    "OperatoryNum:int OpName:text Abbrev:text ItemOrder:int IsHidden:bool ProvDentist:int"
    " ProvHygienist:int IsHygiene:bool ClinicNum:int SetProspective:bool IsWebSched:bool"
    " OperatoryType:int operatoryType:text DateTStamp:datetime",
    "OperatoryNum DateTStamp",
)
PROVIDER = _shape(
    "ProvNum:int Abbr:text LName:text FName:text MI:text Suffix:text FeeSched:int Specialty:int"
    " SSN:text StateLicense:text IsSecondary:bool provColor:color IsHidden:bool UsingTIN:bool"
    " SigOnFile:bool NationalProvID:text DateTStamp:datetime IsNotPerson:bool ProvStatus:text"
    " IsHiddenReport:bool Birthdate:date SchedNote:text PreferredName:text",
    "ProvNum DateTStamp",
)
SCHEDULE = _shape(
    "ScheduleNum:intish SchedDate:date StartTime:time StopTime:time SchedType:text"
    " ProvNum:intish BlockoutType:intish blockoutType:text Note:text operatories:text"
    " EmployeeNum:intish DateTStamp:datetime",
    "ScheduleNum DateTStamp",
    note="numbers arrive as strings; operatories is a comma-separated list of OperatoryNums",
)
TOOTH_INITIAL = _shape(
    "ToothInitialNum:int PatNum:int ToothNum:text InitialType:text Movement:decimal"
    " DrawingSegment:text ColorDraw:color SecDateTEntry:datetime SecDateTEdit:datetime"
    " DrawText:text",
    "ToothInitialNum SecDateTEdit",
    note="ToothNum is text: 1-32, A-T for primary teeth, 51+ for supernumerary",
)
# Newer tables, seen only in third-party code (25.4+): columns from the matching GET endpoints.
LAB_CASE = _shape(
    "LabCaseNum:int PatNum:int LaboratoryNum:int AptNum:int PlannedAptNum:int"
    " DateTimeDue:datetime DateTimeCreated:datetime DateTimeSent:datetime DateTimeRecd:datetime"
    " DateTimeChecked:datetime ProvNum:int Instructions:text LabFee:num DateTStamp:datetime"
    " InvoiceNum:text SecDateTEdit:datetime",
    "LabCaseNum",
)
MEDICATION_PAT = _shape(
    "MedicationPatNum:int PatNum:int medName:text MedicationNum:int PatNote:text"
    " DateStart:date DateStop:date ProvNum:int DateTStamp:datetime SecDateTEdit:datetime",
    "MedicationPatNum",
)
# fmt: on
_UNCONFIRMED = "shape unconfirmed: only the primary key is certain; delete by it"

SHAPES: dict[str, Shape] = {
    "Appointment": APPOINTMENT,
    "AppointmentDeleted": APPOINTMENT_DELETED,
    "Patient": PATIENT,
    "PatientSelected": PATIENT_SELECTED,
    "PatField": PAT_FIELD,
    "PatFieldDeleted": _optional(PAT_FIELD, "PatFieldNum", _UNCONFIRMED),
    "Operatory": OPERATORY,
    "Provider": PROVIDER,
    "Schedule": SCHEDULE,
    "ScheduleDeleted": _optional(SCHEDULE, "ScheduleNum", _UNCONFIRMED),
    "ToothInitial": TOOTH_INITIAL,
    "ToothInitialDeleted": _optional(TOOTH_INITIAL, "ToothInitialNum", _UNCONFIRMED),
    "LabCase": LAB_CASE,
    "LabCaseDeleted": _optional(LAB_CASE, "LabCaseNum", _UNCONFIRMED),
    "MedicationPat": MEDICATION_PAT,
    "MedicationPatDeleted": _optional(MEDICATION_PAT, "MedicationPatNum", _UNCONFIRMED),
}
