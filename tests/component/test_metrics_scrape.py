"""GET /metrics after real traffic: names, labels, and a valid Prometheus exposition."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import bridge
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, body_bytes, make_config, sample


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(family: Any, suffix: str = "", **labels: str) -> float:
    for s in family.samples:
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {family.name}{suffix} {labels}")


async def test_metrics_after_traffic(aiohttp_client: Any) -> None:
    publisher = InMemoryPublisher()
    app = build_app(make_config(listen={"max_body_bytes": 2048}), publisher)
    client = await aiohttp_client(app)
    appt = sample("appointment")

    ok = await client.post("/apievents", data=body_bytes(appt), headers=appt["headers"])
    assert ok.status == 200
    bad = await client.post("/apievents", data=b"[{", headers={"Authorization": TEST_KEY})
    assert bad.status == 400
    denied = await client.post("/apievents", data=b"[]", headers={"Authorization": "nope"})
    assert denied.status == 401
    big = await client.post(
        "/apievents", data=b"[" + b" " * 4096 + b"]", headers={"Authorization": TEST_KEY}
    )
    assert big.status == 413
    publisher.fail = True
    down = await client.post("/apievents", data=body_bytes(appt), headers=appt["headers"])
    assert down.status == 503

    scrape = await client.get("/metrics")
    assert scrape.status == 200
    assert scrape.headers["Content-Type"].startswith("text/plain")
    fams = _families(await scrape.text())

    # Counters are exposed as `<name>_total`; the parser names the family without it.
    expected = {
        "od_bridge_requests": "counter",
        "od_bridge_request_duration_seconds": "histogram",
        "od_bridge_auth_failures": "counter",
        "od_bridge_rejected_requests": "counter",
        "od_bridge_rows_published": "counter",
        "od_bridge_rows_spooled": "counter",
        "od_bridge_spool_depth": "gauge",
        "od_bridge_publish_confirm_duration_seconds": "histogram",
        "od_bridge_broker_connected": "gauge",
        "od_bridge_sync_pending_changes": "gauge",
        "od_bridge_sync_actions": "counter",
        # The text format has no `info` type: Info is a gauge named `<name>_info`.
        "od_bridge_build_info": "gauge",
    }
    for name, kind in expected.items():
        assert name in fams, name
        assert fams[name].type == kind, (name, fams[name].type)

    requests = fams["od_bridge_requests"]
    assert _value(requests, "_total", customer="main-office", type="Appointment", status="200") == 1
    assert _value(requests, "_total", customer="main-office", status="400") == 1
    assert _value(requests, "_total", customer="-", status="401") == 1
    assert _value(requests, "_total", customer="main-office", status="413") == 1
    assert _value(requests, "_total", customer="main-office", type="Appointment", status="503") == 1
    assert _value(
        fams["od_bridge_rows_published"], "_total", customer="main-office", type="Appointment"
    ) == len(appt["body"])
    assert _value(fams["od_bridge_auth_failures"], "_total") == 1
    for status in ("400", "401", "413"):
        assert _value(fams["od_bridge_rejected_requests"], "_total", status=status) == 1
    assert _value(fams["od_bridge_request_duration_seconds"], "_count") == 5
    assert _value(fams["od_bridge_publish_confirm_duration_seconds"], "_count") == 1
    # The publisher was told to fail, so the broker reads as down at scrape time.
    assert _value(fams["od_bridge_broker_connected"]) == 0
    assert _value(fams["od_bridge_build_info"], version=bridge.__version__) == 1
