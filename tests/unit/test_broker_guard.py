"""The broker guard fails a run that restarted or re-tuned the local broker, and only then."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.broker_guard import TERM, BrokerState, Guard

BEFORE = BrokerState(uptime_ms=900_000, watermark="0.4", supervisor='"<0.300.0>"')


def reader(*states: BrokerState | str) -> Callable[[], BrokerState | str]:
    answers = iter(states)
    return lambda: next(answers)


@pytest.mark.parametrize(
    ("after", "why"),
    [
        (BrokerState(5_000, "0.4", '"<0.300.0>"'), "its VM restarted (uptime 900 s -> 5 s)"),
        (BrokerState(960_000, "0.4", '"<0.9999.3>"'), "its rabbit app restarted"),
        (BrokerState(960_000, "1.0e-7", '"<0.300.0>"'), "its watermark changed (0.4 -> 1.0e-7)"),
        ("connection refused", "is gone or unreadable"),
    ],
)
def test_a_disturbed_broker_fails_the_run(after: BrokerState | str, why: str) -> None:
    ok, line = Guard(reader(BEFORE, after)).verdict()
    assert not ok
    assert why in line


def test_a_broker_left_alone_passes() -> None:
    after = BrokerState(960_000, "0.4", '"<0.300.0>"')
    assert Guard(reader(BEFORE, after)).verdict() == (
        True,
        "broker guard: the broker at AMQP_URL was left alone"
        " (uptime 900 s -> 960 s, same app, watermark 0.4)",
    )


def test_a_broker_it_cannot_read_is_not_checked() -> None:
    assert Guard(reader("no rabbitmqctl on PATH")).verdict() == (
        True,
        "broker guard: not checked: no rabbitmqctl on PATH",
    )


def test_the_probe_answer_parses() -> None:
    match = TERM.match('{1450900,{absolute,419430400},"<0.16935.6>",[5672,5673]}')
    assert match is not None
    assert (match[1], match[2], match[3], match[4]) == (
        "1450900", "{absolute,419430400}", '"<0.16935.6>"', "5672,5673"
    )  # fmt: skip
