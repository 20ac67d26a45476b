"""Configuration that cannot silently do less than it says (issue 13, part 7)."""

from __future__ import annotations

import pytest

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
