"""Configuration: env expansion, validation with one line per problem, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import cli
from bridge.config_loader import load, parse
from bridge.errors import ConfigError

MINIMAL = """
customers:
  - name: main-office
    customer_key: ${KEY}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env={} if env is None else env)
    return info.value.problems


def test_example_config_is_valid() -> None:
    config = load(Path(__file__).parents[2] / "config.example.yaml", env={})
    assert config.customers[0].keys == ("VzkmZEaUWOjnQX2z",)
    assert config.amqp.url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"


def test_env_expansion_with_and_without_default() -> None:
    config = parse(MINIMAL + "public_url: ${URL:-http://x:1}\n", env={"KEY": "abc"})
    assert config.customers[0].customer_key.get_secret_value() == "abc"
    assert config.public_url == "http://x:1"
    assert problems(MINIMAL) == ["customers[0].customer_key: environment variable KEY is not set"]


def test_every_problem_is_listed_with_its_place() -> None:
    text = """
listen: {port: 99999, colour: blue}
customers:
  - name: Main Office
    customer_key: k1
    timezone: Mars/Base
  - name: b
    customer_key: k2
    subscriptions:
      - {watch_table: Appointment, ui_event_type: PatientSelected}
      - {ui_event_type: PatientSelected, polling_seconds: 5}
sync: {mode: sometimes}
"""
    found = problems(text)
    assert "listen.port: Input should be less than or equal to 65535" in found
    assert "listen.colour: Extra inputs are not permitted" in found
    assert "customers[0].name: use lower-case letters, digits and '-' only" in found
    assert "customers[0].timezone: unknown time zone 'Mars/Base'" in found
    assert (
        "customers[1].subscriptions[0]: give exactly one of watch_table or ui_event_type" in found
    )
    assert any(p.startswith("customers[1].subscriptions[1]: polling_seconds") for p in found)
    assert any(p.startswith("sync.mode: Input should be") for p in found)


def test_duplicate_names_and_keys_are_rejected() -> None:
    text = """
customers:
  - {name: a, customer_key: same}
  - {name: a, customer_key: other}
"""
    assert problems(text) == ["customers: Value error, customer name 'a' is used twice"] or any(
        "used twice" in p for p in problems(text)
    )
    text = """
customers:
  - {name: a, customer_key: same-secret-key}
  - {name: b, customer_key: same-secret-key}
"""
    found = problems(text)
    assert any("shares a customer key" in p for p in found)
    assert not any("same-secret-key" in p for p in found)


def test_secrets_never_appear_in_errors_or_repr() -> None:
    text = """
amqp: {url: "http://user:hunter2@host/"}
customers:
  - {name: a, customer_key: 12345, api: {developer_key: devsecret, url: ftp://x}}
"""
    found = problems(text)
    assert found and not any("hunter2" in p or "devsecret" in p for p in found)
    config = parse(MINIMAL + "amqp: {url: 'amqp://u:hunter2@h/'}\n", env={"KEY": "topsecret"})
    assert "topsecret" not in repr(config) and "hunter2" not in repr(config)


def test_bad_yaml_and_wrong_top_level() -> None:
    assert problems("customers: [")[0].startswith("line ")
    assert problems("- a\n- b\n") == ["(top level): must be a mapping of settings"]
    assert problems("") == ["customers: Field required"]


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("customers: [{name: a, customer_key: k}]\n")
    assert cli.main(["check-config", "-c", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("customers: [{name: a, customer_key: k, timezone: Mars/Base}]\n")
    assert cli.main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "customers[0].timezone: unknown time zone 'Mars/Base'" in err
    assert "Traceback" not in err
    assert cli.main(["check-config", "-c", str(tmp_path / "missing.yaml")]) == 2


def test_a_routing_key_template_that_could_exceed_255_bytes_is_refused() -> None:
    text = """
amqp: {routing_key: "{customer}.{workstation}.{workstation}.{workstation}.{clinic}"}
customers:
  - {name: main-office, customer_key: k1}
"""
    found = problems(text)
    assert any("gives keys of up to 271 bytes for customer 'main-office'" in p for p in found)
    ok = """
amqp: {routing_key: "{customer}.{workstation}.{workstation}.{clinic}"}
customers:
  - {name: main-office, customer_key: k1}
"""
    assert parse(ok, env={}).amqp.routing_key.count("{workstation}") == 2
