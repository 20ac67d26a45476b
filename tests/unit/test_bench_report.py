"""The bench's verdicts: each target computed from the right figures of one run."""

from __future__ import annotations

from typing import Any

from bench.load import percentiles
from bench.report import pool_rounds, render, verdicts


def _open_loop(p99: float) -> dict[str, Any]:
    return {
        "rps": 1000.0,
        "rows_per_s": 1000.0,
        "latency_ms": {"p50": 1.0, "p99": p99, "max": p99},
        "e2e_ms": {"p50": 1.0, "p90": 2.0, "p99": p99, "max": p99},
        "e2e_matched": 60_000,
        "e2e_lost": 0,
        "rounds_p99": [p99, p99],
        "rounds_http_p99": [p99, p99],
    }


def _run() -> dict[str, Any]:
    return {
        "prefix": "bench-test",
        "http": {"rps": 20_000.0, "rows_per_s": 20_000.0},
        "amqp": {"rate": 5_000.0, "failed": 0},
        "naive_a": {"rps": 3_000.0, "rows_per_s": 3_000.0},
        "bridge_a": {"rps": 3_600.0, "rows_per_s": 3_600.0},
        "bridge_b1000": {"rps": 6.0, "rows_per_s": 6_000.0},
        "open_rate": 900,
        "bridge_c": _open_loop(3.0),
        "naive_c": _open_loop(4.0),
        "bridge_d": {"runs": [0.4, 0.5], "median_s": 0.5, "max_s": 0.5},
        "bridge_e": {
            "rps": 10.0,
            "rows_per_s": 10_000.0,
            "rss_mb": {
                "rows": 10**6,
                "at_ready": 57.0,
                "after_warmup": 75.0,
                "end": 80.0,
                "max": 81.0,
            },
        },
    }


def test_every_target_is_a_ratio_of_the_same_run() -> None:
    found = {v["target"]: (round(v["value"], 3), v["met"]) for v in verdicts(_run())}
    assert found == {
        "(a) od-bridge / naive": (1.2, True),
        "(a) od-bridge / combined ceiling": (0.9, True),  # 3,600 / 4,000
        "(b) 1000-row rows/s / AMQP ceiling": (1.2, True),
        "(c) e2e p99 ms at 25 %": (3.0, True),
        "(c) e2e p99 od-bridge / naive": (0.75, True),
        "(d) startup to ready, median s": (0.5, True),
        "(e) RSS MB after rows": (80.0, True),
        "(e) RSS growth after warm-up, MB": (5.0, True),
    }


def test_a_missed_target_is_reported_as_missed() -> None:
    run = _run()
    run["bridge_c"] = _open_loop(4.2)
    found = {v["target"]: v["met"] for v in verdicts(run)}
    assert found["(c) e2e p99 od-bridge / naive"] is False
    table = render({**run, "verdicts": verdicts(run)})
    line = next(x for x in table.splitlines() if x.startswith("(c) e2e p99 od-bridge / naive"))
    assert line.split()[-4:] == ["1.050", "<=", "1.0", "NO"]


def test_scenarios_not_run_have_no_verdict_and_still_render() -> None:
    run = {"prefix": "bench-test", "open_rate": 900, "bridge_c": _open_loop(3.0)}
    run["naive_c"] = _open_loop(6.0)
    found = {v["target"]: v["met"] for v in verdicts(run)}
    assert found == {"(c) e2e p99 ms at 25 %": True, "(c) e2e p99 od-bridge / naive": True}
    table = render({**run, "verdicts": verdicts(run)})
    assert "combined" not in table
    assert "60000 events matched end to end over all rounds" in table


def test_percentiles_are_taken_from_every_sample() -> None:
    # 1,000 samples of 1 ms and 20 of 50 ms: the p99 lies among the slow ones.
    found = percentiles([0.001] * 1000 + [0.05] * 20)
    assert found["p50"] == 1.0
    assert found["p99"] == 50.0
    assert found["max"] == 50.0


def test_rounds_are_pooled_not_picked() -> None:
    # Round 1 had a stall (its p99 is 40 ms), round 2 none: the pooled p99 of the two rounds
    # lies between, and every event counts once.
    def round_(slow: int, p99: float) -> dict[str, Any]:
        deltas = [0.001] * (1000 - slow) + [0.04] * slow
        return {
            **_open_loop(p99),
            "e2e_ms": percentiles(deltas),
            "e2e_lost": 1,
            "e2e_deltas": deltas,
            "valid": True,
        }

    pooled = pool_rounds([round_(15, 40.0), round_(0, 1.0)])
    assert pooled["e2e_matched"] == 2000
    assert pooled["e2e_lost"] == 2
    assert pooled["rounds_p99"] == [40.0, 1.0]
    assert pooled["e2e_ms"]["p99"] == 1.0  # 15 slow events in 2,000 are 0.75 %
    assert "e2e_deltas" not in pooled
    assert pooled["valid"] is True
