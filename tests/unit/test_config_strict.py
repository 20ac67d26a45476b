"""Configuration that cannot silently do less than it says (issue 13, part 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config_loader import parse
from bridge.errors import ConfigError

BASE = """
customers:
  - name: main-office
    customer_key: k-0001
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse(text, env={})
    return raised.value.problems


def test_a_key_given_twice_is_an_error_naming_both_lines() -> None:
    # Before: PyYAML kept the second `timezone` silently.
    text = BASE + "    timezone: UTC\n    timezone: America/Chicago\n"
    assert problems(text) == ["line 6: not valid YAML (duplicate key 'timezone' (first on line 5))"]


def test_a_top_level_section_given_twice_is_an_error() -> None:
    assert problems("log: {level: INFO}\n" + BASE + "log: {level: DEBUG}\n") == [
        "line 6: not valid YAML (duplicate key 'log' (first on line 1))"
    ]


def test_merge_keys_still_work() -> None:
    text = """
defaults: &d {timezone: UTC}
customers:
  - <<: *d
    name: main-office
    customer_key: k-0001
"""
    with pytest.raises(ConfigError, match="defaults: Extra inputs are not permitted"):
        parse(text, env={})


def test_dollar_dollar_is_a_literal_dollar_brace() -> None:
    # Before: there was no way to write `${` into a value (a key or password holding it).
    text = BASE.replace("k-0001", '"a$${NOT_A_VAR}b${SET}"')
    config = parse(text, env={"SET": "s"})
    assert config.customers[0].customer_key.get_secret_value() == "a${NOT_A_VAR}bs"


def customer(extra: str) -> str:
    return BASE + "".join(f"    {line}\n" for line in extra.strip().splitlines())


def test_a_misspelled_watch_table_is_an_error_with_a_suggestion() -> None:
    # Before: `watch_table: Appointmnet` passed check-config and failed only at sync time.
    text = customer("""
subscriptions:
  - {watch_table: Appointmnet}
  - {ui_event_type: PatientSelect}
  - {watch_table: patient}
""")
    assert problems(text) == [
        "customers[0].subscriptions[0].watch_table: 'Appointmnet' is not a WatchTable this "
        "bridge knows (did you mean 'Appointment'?); if it is newer than this bridge, add it "
        "to allow_unknown",
        "customers[0].subscriptions[1].ui_event_type: 'PatientSelect' is not a UiEventType "
        "this bridge knows (did you mean 'PatientSelected'?); if it is newer than this bridge, "
        "add it to allow_unknown",
    ]


def test_a_misspelled_fields_table_is_an_error() -> None:
    # Before: `fields: {Patients: [PatNum, LName]}` (for Patient) passed check-config and the
    # published Patient events carried SSN and Birthdate: the PHI filter was silently off.
    assert problems(customer("fields: {Patients: [PatNum, LName]}")) == [
        "customers[0].fields.Patients: not an Open Dental table or event type this bridge "
        "knows (did you mean 'Patient'?); if it is newer than this bridge, add it to "
        "allow_unknown"
    ]


def test_allow_unknown_accepts_a_newer_table() -> None:
    text = customer("""
allow_unknown: [Commlog]
fields: {Commlog: [CommlogNum, Note]}
subscriptions: [{watch_table: Commlog}]
""")
    assert parse(text, env={}).customers[0].allow_unknown == ("Commlog",)


def test_check_config_lists_every_unknown_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(customer("subscriptions: [{watch_table: Pateint}, {watch_table: Shedule}]"))
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "(did you mean 'Patient'?)" in err[0]
    assert "(did you mean 'Schedule'?)" in err[1]


def test_a_field_the_table_does_not_have_is_an_error_with_its_right_case() -> None:
    # `fields` keeps names in their exact case: `lname` would keep nothing and drop LName.
    assert problems(customer("fields: {Patient: [PatNum, lname, Brithdate]}")) == [
        "customers[0].fields.Patient: 'lname' is not a field of Patient (did you mean "
        "'LName'?); if it is newer than this bridge, add it to allow_unknown",
        "customers[0].fields.Patient: 'Brithdate' is not a field of Patient (did you mean "
        "'Birthdate'?); if it is newer than this bridge, add it to allow_unknown",
    ]


def test_a_redact_name_no_table_has_is_an_error() -> None:
    # Before: `redact: [SSNN]` passed and SSN was published.
    assert problems(customer("redact: [ssn, SSNN]")) == [
        "customers[0].redact: 'SSNN' is not a field of any table this bridge knows (did you "
        "mean 'SSN'?); if it is newer than this bridge, add it to allow_unknown"
    ]


def test_allow_unknown_accepts_a_newer_field() -> None:
    text = customer("""
allow_unknown: [PreferredPronoun]
fields: {Patient: [PatNum, PreferredPronoun]}
redact: [PreferredPronoun]
""")
    assert parse(text, env={}).customers[0].redact == ("PreferredPronoun",)
