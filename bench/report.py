"""Ratios against the performance targets (bench/README.md, "Why ratios"), and the printed table."""

from __future__ import annotations

import math
from typing import Any

from .load import percentiles


def _get(results: dict[str, Any], *path: str) -> float:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    return float(node)


def pool_rounds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """4c's rounds of one server as one result: end-to-end percentiles over every matched event.

    The median round (by its p99) supplies the rest (rate, HTTP answer latency); the per-round
    p99s show the spread. Each report's `e2e_deltas` (seconds) is consumed.
    """
    deltas = [d for rep in reports for d in rep.pop("e2e_deltas")]
    median = sorted(reports, key=lambda rep: float(rep["e2e_ms"]["p99"]))[len(reports) // 2]
    return {
        **median,
        "valid": all(rep.get("valid") for rep in reports),
        "e2e_ms": percentiles(deltas),
        "e2e_matched": len(deltas),
        "e2e_lost": sum(rep["e2e_lost"] for rep in reports),
        "rounds_p99": [round(rep["e2e_ms"]["p99"], 2) for rep in reports],
        "rounds_http_p99": [round(rep["latency_ms"]["p99"], 2) for rep in reports],
    }


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: measured ratio or figure, the bound, and whether it is met."""
    http = _get(r, "http", "rps")
    amqp = _get(r, "amqp", "rate")
    naive = _get(r, "naive_a", "rps")
    combined = 1 / (1 / http + 1 / amqp)
    a = _get(r, "bridge_a", "rps")
    b1000 = _get(r, "bridge_b1000", "rows_per_s")
    c99 = _get(r, "bridge_c", "e2e_ms", "p99")
    n99 = _get(r, "naive_c", "e2e_ms", "p99")
    rss = r.get("bridge_e", {}).get("rss_mb", {})
    out = [
        ("(a) od-bridge / naive", a / naive, ">=", 1.10),
        ("(a) od-bridge / combined ceiling", a / combined, ">=", 0.75),
        ("(b) 1000-row rows/s / AMQP ceiling", b1000 / amqp, ">=", 1.0),
        ("(c) e2e p99 ms at 25 %", c99, "<=", 10.0),
        ("(c) e2e p99 od-bridge / naive", c99 / n99, "<=", 1.0),
        ("(d) startup to ready, median s", _get(r, "bridge_d", "median_s"), "<=", 1.5),
    ]
    if rss:
        out.append(("(e) RSS MB after rows", rss["end"], "<=", 120.0))
        growth = rss["end"] - rss["after_warmup"]
        out.append(("(e) RSS growth after warm-up, MB", growth, "<=", 10.0))
    verdict = []
    for name, value, op, bound in out:
        if math.isnan(value):
            continue  # its scenario was not run (--only)
        met = (value >= bound) if op == ">=" else (value <= bound)
        verdict.append({"target": name, "value": value, "op": op, "bound": bound, "met": bool(met)})
    return verdict


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def render(r: dict[str, Any]) -> str:
    """The table: every figure of the run, then every ratio against its target."""
    http = _get(r, "http", "rps")
    amqp = _get(r, "amqp", "rate")
    combined = 1 / (1 / http + 1 / amqp)
    lines = ["", f"od-bridge bench (prefix {r['prefix']}, one run)", ""]
    head = ["scenario", "req/s", "rows/s", "p50 ms", "p99 ms", "max ms", "cpu µs/row", "non-200"]
    rows = [head]

    def add(name: str, key: str, e2e: bool = False) -> None:
        rep = r.get(key)
        if not rep:
            return
        lat = rep.get("e2e_ms" if e2e else "latency_ms", {})
        cpu = rep.get("server_cpu_s")
        cpu_row = (
            f"{1e6 * cpu / max(rep.get('completed', 0) * rep.get('rows_per_request', 1), 1):.0f}"
            if cpu is not None
            else "-"
        )
        rows.append(
            [
                name,
                f"{rep['rps']:.0f}",
                f"{rep['rows_per_s']:.0f}",
                f"{lat.get('p50', math.nan):.2f}",
                f"{lat.get('p99', math.nan):.2f}",
                f"{lat.get('max', math.nan):.2f}",
                cpu_row,
                str(rep.get("non200", 0) + rep.get("errors", 0)),
            ]
        )

    add("1 HTTP ceiling (64 conns)", "http")
    if "amqp" in r:
        a = r["amqp"]
        rows.append(
            [
                "2 AMQP ceiling (256 in flight)",
                "-",
                f"{a['rate']:.0f}",
                "-",
                "-",
                "-",
                "-",
                str(a["failed"]),
            ]
        )
    if not math.isnan(combined):
        rows.append(["  combined 1/(1/http+1/amqp)", f"{combined:.0f}", "", "", "", "", "", ""])
    add("3 naive bridge (64 conns)", "naive_a")
    add("4a od-bridge single (64 conns)", "bridge_a")
    add("4b od-bridge 100-row arrays", "bridge_b100")
    add("4b od-bridge 1000-row arrays", "bridge_b1000")
    rate = r.get("open_rate", 0)
    add(f"4c od-bridge open {rate:.0f}/s e2e", "bridge_c", e2e=True)
    add(f"4c naive open {rate:.0f}/s e2e", "naive_c", e2e=True)
    add("4e od-bridge RSS run (1000-row)", "bridge_e")
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines += [_row(row, widths) for row in rows]
    rounds = {
        k: r[k]["rounds"]
        for k in ("http", "amqp", "naive_a", "bridge_a")
        if "rounds" in r.get(k, {})
    }
    if rounds:
        lines.append(
            "\nrounds (rows 1, 2, 3, 4a are the best of these interleaved rounds, per second):"
        )
        lines += [f"  {k:<9} {v}" for k, v in rounds.items()]
        paired = ", ".join(f"{x:.3f}" for x in r.get("paired_a_over_naive", []))
        lines.append(f"  od-bridge / naive within each round: {paired}")
    d = r.get("bridge_d")
    if d:
        runs = ", ".join(f"{t:.2f}" for t in d["runs"])
        lines.append(f"\n4d startup to /readyz 200: median {d['median_s']:.2f} s (runs: {runs})")
    e = r.get("bridge_e", {}).get("rss_mb")
    if e:
        lines.append(
            f"4e RSS over {e['rows']:,} rows: at ready {e['at_ready']:.1f} MB, after warm-up "
            f"{e['after_warmup']:.1f} MB, end {e['end']:.1f} MB, max {e['max']:.1f} MB"
        )
    for key in ("bridge_c", "naive_c"):
        c = r.get(key)
        if c:
            lines.append(
                f"{key}: {c['e2e_matched']} events matched end to end over all rounds "
                f"(pooled in the 4c rows), {c['e2e_lost']} lost; per round e2e p99 "
                f"{c.get('rounds_p99')}, HTTP answer p99 {c.get('rounds_http_p99')} ms"
            )
    lines += ["", "targets (ratios within this run):"]
    vrows = [["target", "value", "bound", "met"]]
    for v in r.get("verdicts", []):
        vrows.append(
            [
                v["target"],
                f"{v['value']:.3f}",
                f"{v['op']} {v['bound']}",
                "yes" if v["met"] else "NO",
            ]
        )
    vw = [max(len(row[i]) for row in vrows) for i in range(4)]
    lines += [_row(row, vw) for row in vrows]
    if r.get("problems"):
        lines += ["", "!!! PROBLEMS (a non-200 or a lost message invalidates its scenario):"]
        lines += [f"!!!   {p}" for p in r["problems"]]
    return "\n".join(lines)
