"""deploy/monitoring: promtool checks and tests the rules; every expression uses real series."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge import health as thresholds
from bridge.config import Spool
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from bridge.service import Service
from bridge.sync.loop import SyncResult
from bridge.sync.plan import Plan
from tests.support import TEST_KEY, body_bytes, missing, sample
from tests.unit.test_health import CONFIG, listing

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "rules.yml"
DASHBOARD = MONITORING / "dashboard.json"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
_SERIES = re.compile(r"\b((?:od_bridge|process|python_gc)_[a-zA-Z0-9_]+)\b(\{[^}]*\})?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def promtool() -> str:
    """The promtool binary (Debian's prometheus package); required under CI=true."""
    found = shutil.which("promtool")
    if found:
        return found
    missing("promtool is not installed (apt-get install prometheus)")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        check=False,
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = orjson.loads(DASHBOARD.read_bytes())
    found = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in doc["templating"]["list"] if v.get("definition")]
    return found


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables filled in, as Prometheus would get it."""
    expr = expr.replace("$__rate_interval", "5m").replace("$customer", ".*")
    # label_values(metric, label) is Grafana's: the series it reads is the metric.
    return re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", expr)


@pytest.fixture
async def exported() -> dict[str, set[str]]:
    """Every series the bridge exports after some traffic and a sync pass: name → label names."""
    from aiohttp.test_utils import TestClient, TestServer  # noqa: PLC0415

    # The daemon's own wiring: its metrics, liveness and the syncer's results as it counts them.
    config = CONFIG.model_copy(update={"spool": Spool(enabled=False)})
    service = Service(config)
    failing = [
        s | {"FailureReason": "x", "SubsequentFailures": 1, "DateTimeLastFailure": "2026-11-28"}
        for s in listing()
    ]
    service._count_sync(SyncResult("main-office", Plan("main-office", ()), listing=failing), True)
    service._count_sync(SyncResult("quiet-office", error="unreachable"), True)
    app = build_app(config, InMemoryPublisher(), service.metrics, ops=service.ops)
    async with TestClient(TestServer(app)) as client:
        appt = sample("appointment")
        headers = appt["headers"] | {"Authorization": "k1"}
        assert (await client.post("/apievents", data=body_bytes(appt), headers=headers)).ok
        await client.post("/apievents", data=b"[]", headers={"Authorization": TEST_KEY})
        text = await (await client.get("/metrics")).text()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def check_series(expr: str, exported: dict[str, set[str]]) -> None:
    """Every series name in `expr` is exported, with every label the expression names."""
    names = set()
    for name, selector in _SERIES.findall(expr):
        assert name in exported, f"{name} is not exported by the bridge (in: {expr})"
        names.add(name)
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector or ""):
            assert label in exported[name] | TARGET_LABELS, f"{name} has no label {label}"
    assert names, f"no od-bridge series in: {expr}"
    known = set().union(*(exported[n] for n in names)) | TARGET_LABELS | {"le"}
    for group in _GROUPING.findall(expr):
        for label in (g.strip() for g in group.split(",") if g.strip()):
            assert label in known, f"label {label} is on none of {sorted(names)} (in: {expr})"


def test_promtool_checks_the_rules() -> None:
    done = run("check", "rules", "rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_every_alert() -> None:
    tests = yaml.safe_load((MONITORING / "rules_test.yml").read_text(encoding="utf-8"))
    tested = {
        case["alertname"]
        for group in tests["tests"]
        for case in group["alert_rule_test"]
        if case["exp_alerts"]  # a case where it fires, not only one where it stays quiet
    }
    assert tested == {r["alert"] for r in rules()}
    done = run("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_thresholds_are_the_status_pages() -> None:
    by_name = {r["alert"]: " ".join(r["expr"].split()) for r in rules()}
    silent = (
        f"od_bridge_subscription_lag_seconds > {thresholds.SILENT_FACTOR} "
        f"* od_bridge_subscription_polling_seconds + {thresholds.SILENT_SLACK_S}"
    )
    assert by_name["OdBridgeOfficeSilent"] == silent
    assert by_name["OdBridgeResendHorizonAtRisk"].endswith(f"> {thresholds.HORIZON_RISK_S}")
    assert by_name["OdBridgeSpoolOldRows"].endswith(f"> {thresholds.SPOOL_OLDEST_WARN_S}")


def test_rules_use_only_series_the_bridge_exports(exported: dict[str, set[str]]) -> None:
    for rule in rules():
        check_series(rule["expr"], exported)
        for label in re.findall(r"\$labels\.(\w+)", str(rule["annotations"])):
            series = {n for n, _ in _SERIES.findall(rule["expr"])}
            grouped = _GROUPING.findall(rule["expr"])
            kept = {g.strip() for grp in grouped for g in grp.split(",")} if grouped else None
            assert label in (kept or set().union(*(exported[n] for n in series))) | TARGET_LABELS


def test_every_dashboard_expression_is_valid_promql_on_exported_series(
    exported: dict[str, set[str]], tmp_path: Path
) -> None:
    exprs = [as_promql(e) for e in dashboard_exprs()]
    assert len(exprs) > 20
    for expr in exprs:
        check_series(expr, exported)
    # promtool parses every expression (as recording rules: the same PromQL parser).
    recorded = [{"record": f"dashboard:{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}), encoding="utf-8"
    )
    done = run("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_made_up_series_name_would_be_caught(exported: dict[str, set[str]]) -> None:
    with pytest.raises(AssertionError, match="not exported"):
        check_series("rate(od_bridge_requests_totl[5m])", exported)
    with pytest.raises(AssertionError, match="no label"):
        check_series('od_bridge_spool_depth{customer="x"}', exported)
