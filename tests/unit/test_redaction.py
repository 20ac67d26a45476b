"""Per-customer `redact` and `fields`: what leaves data, what stays, and ids that do not move."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge import config_loader as configmod
from bridge import normalize, opendental

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
ZONE = ZoneInfo("America/Chicago")


def rows(name: str) -> list[dict[str, Any]]:
    body = json.loads((SAMPLES / f"{name}.json").read_text())["body"]
    return body if isinstance(body, list) else [body]


def ctx(**kw: Any) -> normalize.Context:
    return normalize.Context(customer="main-office", zone=ZONE, **kw)


PATIENT = opendental.table("db", "Patient")
SELECTED = opendental.table("ui", "PatientSelected")


def test_redact_removes_fields_ignoring_case_and_keeps_ids() -> None:
    plain = normalize.events(ctx(), PATIENT, "WS", rows("patient"), 0.0)
    red = normalize.events(
        ctx(redact=frozenset({"ssn", "birthdate", "lname"})), PATIENT, "WS", rows("patient"), 0.0
    )
    assert [e.id for e in red] == [e.id for e in plain]  # dedupe still works
    assert [e.subject for e in red] == [e.subject for e in plain]
    data = red[0].data
    assert "SSN" not in data and "Birthdate" not in data and "LName" not in data
    assert data["FName"] == "Jane"  # not listed, kept
    assert set(plain[0].data) - set(data) == {"SSN", "Birthdate", "LName"}


def test_redact_also_applies_without_normalization() -> None:
    out = normalize.events(
        ctx(normalize=False, redact=frozenset({"ssn"})), SELECTED, "WS", rows("patient_selected"), 0
    )
    assert "SSN" not in out[0].data
    assert out[0].data["DateTStamp"] == "2026-11-28 08:35:00"  # untouched otherwise


def test_fields_allowlist_always_keeps_key_and_change_column() -> None:
    appt = opendental.table("db", "Appointment")
    plain = normalize.events(ctx(), appt, "WS", rows("appointment"), 0.0)
    only = normalize.events(
        ctx(fields={"appointment": frozenset({"AptStatus", "confirmed"})}),
        appt,
        "WS",
        rows("appointment"),
        0.0,
    )
    assert [e.id for e in only] == [e.id for e in plain]
    # Exact case: `confirmed` (the text) is kept, its twin `Confirmed` (the number) is not.
    assert set(only[0].data) == {"AptNum", "DateTStamp", "AptStatus", "confirmed"}
    assert only[0].time == plain[0].time
    # Another type without an allowlist is untouched.
    patient = normalize.events(
        ctx(fields={"appointment": frozenset({"AptStatus"})}), PATIENT, None, rows("patient"), 0
    )
    assert (
        patient[0].data.keys()
        == normalize.events(ctx(), PATIENT, None, rows("patient"), 0)[0].data.keys()
    )


def test_redaction_wins_over_the_allowlist() -> None:
    out = normalize.events(
        ctx(fields={"patient": frozenset({"LName", "SSN"})}, redact=frozenset({"ssn"})),
        PATIENT,
        None,
        rows("patient"),
        0.0,
    )
    assert set(out[0].data) == {"PatNum", "DateTStamp", "LName"}


def test_ids_without_key_or_change_column_use_the_raw_row() -> None:
    unknown = opendental.table("db", "Unknown")
    body = [{"Thing": 1, "Secret": "x"}, {"Thing": 1, "Secret": "y"}]
    red = normalize.events(ctx(redact=frozenset({"secret"})), unknown, None, body, 0.0)
    assert red[0].data == red[1].data == {"Thing": 1}
    assert red[0].id != red[1].id  # different raw rows stay different events


def _config(customer: str) -> configmod.Config:
    return configmod.parse("customers:\n  - {name: a, customer_key: k, " + customer + "}\n", env={})


def test_config_accepts_redact_and_fields() -> None:
    c = _config("redact: [SSN, Birthdate], fields: {Patient: [PatNum, LName], Appointment: []}")
    customer = c.customers[0]
    assert customer.redact == ("SSN", "Birthdate")
    assert customer.fields["Patient"] == ("PatNum", "LName")


@pytest.mark.parametrize(
    ("customer", "problem"),
    [
        ("redact: ['']", "customers[0].redact"),
        ("fields: {'Not a type': [X]}", "'Not a type' is not a table or event name"),
        ("fields: {Patient: [A], patient: [B]}", "'patient' is listed twice"),
        ("fields: {Patient: ['']}", "field names must not be empty"),
    ],
)
def test_config_refuses_bad_redact_and_fields(customer: str, problem: str) -> None:
    with pytest.raises(configmod.ConfigError) as info:
        _config(customer)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_config_lists_every_bad_network_with_its_index() -> None:
    with pytest.raises(configmod.ConfigError) as info:
        _config("allowed_networks: [192.0.2.0/24, 10.0.0.1/8, office-lan, '2001:db8::/129']")
    problems = info.value.problems
    assert (
        "customers[0].allowed_networks[1]: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"
    ) in problems
    assert any(
        p.startswith("customers[0].allowed_networks[2]: 'office-lan' is not") for p in problems
    )
    assert any(p.startswith("customers[0].allowed_networks[3]:") for p in problems)
    assert not any("allowed_networks[0]" in p for p in problems)


def test_config_auth_failure_limit_defaults_and_off() -> None:
    c = configmod.parse("customers: [{name: a, customer_key: k}]\n", env={})
    assert c.listen.auth_failure_limit is not None
    assert (c.listen.auth_failure_limit.max_failures, c.listen.auth_failure_limit.window_s) == (
        20,
        60.0,
    )
    off = configmod.parse(
        "listen: {auth_failure_limit: null}\ncustomers: [{name: a, customer_key: k}]\n", env={}
    )
    assert off.listen.auth_failure_limit is None
