"""/status, /status.json and /metrics: self-contained page, document, admin listener, allowlist."""

from __future__ import annotations

import re
import time
from typing import Any

import yaml

from bridge import config_loader
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.ops import Ops, admin_app
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from bridge.service import Service
from bridge.spool import Message
from bridge.status import table
from tests.support import TEST_KEY, body_bytes, sample

T0 = 1_796_000_000.0


def config(admin: dict[str, Any] | None = None) -> Any:
    raw: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "customers": [
            {"name": "main-office", "customer_key": TEST_KEY, "timezone": "America/Chicago"},
            {"name": "north-clinic", "customer_key": "north-key-0001"},
        ],
        "spool": {"enabled": False},
        "admin": admin or {},
    }
    return config_loader.parse(yaml.safe_dump(raw), env={})


async def test_status_page_is_self_contained_and_lists_every_office(aiohttp_client: Any) -> None:
    publisher = InMemoryPublisher()
    client = await aiohttp_client(build_app(config(), publisher))
    appt = sample("appointment")
    assert (await client.post("/apievents", data=body_bytes(appt), headers=appt["headers"])).ok

    page = await client.get("/status")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = await page.text()
    # Works offline: no script, no stylesheet or image from anywhere (the icon is an empty
    # data: URL, so browsers do not ask for /favicon.ico); the one link is to status.json.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert refs == ["data:,", "status.json"], refs
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', html)
    assert 'data-office="main-office"' in html and 'data-office="north-clinic"' in html

    doc = await (await client.get("/status.json")).json()
    offices = {o["customer"]: o for o in doc["offices"]}
    assert set(offices) == {"main-office", "north-clinic"}
    assert set(offices["main-office"]["events"]) == {"Appointment"}
    assert offices["north-clinic"]["events"] == {}
    assert not offices["main-office"]["watched"]  # no api: section, liveness unknown
    assert doc["broker"] == {"state": "connected", "status": "green"}
    assert doc["status"] == "green"
    lines = table(doc).splitlines()
    assert lines[0].split() == [
        *("OFFICE", "STATE", "SUBSCRIPTIONS", "LAST", "EVENTS", "SPOOL", "BROKER")
    ]
    assert lines[1].startswith("main-office") and "Appointment 0 s ago" in lines[1]

    assert (await client.post("/status")).status == 405
    publisher.fail = True  # the broker reads as down: every office turns red
    doc = await (await client.get("/status.json")).json()
    assert {o["status"] for o in doc["offices"]} == {"red"}
    assert "broker disconnected" in doc["offices"][0]["reasons"]


async def test_admin_listener_takes_the_pages_off_the_main_listener(aiohttp_client: Any) -> None:
    cfg = config({"listen": "127.0.0.1:9464", "allowed_networks": ["127.0.0.1"]})
    main = await aiohttp_client(build_app(cfg, InMemoryPublisher()))
    for path in ("/metrics", "/status", "/status.json"):
        assert (await main.get(path)).status == 404, path
    assert (await main.get("/readyz")).status == 200  # probes stay where they were

    metrics = Metrics()
    health = Health(cfg)
    metrics.registry.register(health)
    ops = Ops(cfg, metrics, health, lambda: {"ready": True, "broker": "connected"})
    admin = await aiohttp_client(admin_app(ops))
    for path in ("/metrics", "/status", "/status.json"):
        assert (await admin.get(path)).status == 200, path
    assert (await admin.get("/apievents")).status == 404
    assert "process_resident_memory_bytes" in await (await admin.get("/metrics")).text()


async def test_allowlist_refuses_other_addresses_on_either_listener(aiohttp_client: Any) -> None:
    cfg = config({"allowed_networks": ["10.0.0.0/8"]})  # the test client is 127.0.0.1
    client = await aiohttp_client(build_app(cfg, InMemoryPublisher()))
    for path in ("/metrics", "/status", "/status.json"):
        resp = await client.get(path)
        assert resp.status == 403, path
        assert "application/json" in resp.headers["Content-Type"]
    assert (await client.get("/healthz")).status == 200


async def oldest_age(service: Service) -> float:
    """od_bridge_spool_oldest_age_seconds as a scrape would read it."""
    await service._collect()
    text = service.metrics.render().decode()
    found = re.search(r"^od_bridge_spool_oldest_age_seconds (\S+)$", text, re.M)
    assert found is not None
    return float(found[1])


async def test_spooled_rows_show_their_age_in_metrics_and_status(tmp_path: Any) -> None:
    raw = {
        "customers": [{"name": "main-office", "customer_key": TEST_KEY}],
        "spool": {"enabled": True, "path": str(tmp_path / "spool.sqlite3")},
    }
    service = Service(config_loader.parse(yaml.safe_dump(raw), env={}))
    assert service.spool is not None
    await service.spool.open()
    try:
        old = time.time() - 1000  # accepted 1000 s ago, still waiting for the broker
        await service.spool.append([Message("ex", "rk", "id1", "t", old, b"{}")])
        assert 1000 <= await oldest_age(service) < 1100
        doc = await service.ops.snapshot()
        assert doc["spool"]["depth"] == 1 and doc["spool"]["status"] == "amber"
        assert "oldest spooled row 17 min old" in doc["offices"][0]["reasons"]
        # The drainer sends the oldest row: the age is the next row's.
        await service.spool.append([Message("ex", "rk", "id2", "t", time.time() - 5, b"{}")])
        [(seq, _)] = await service.spool.peek(1)
        await service.spool.delete(seq, seq)
        assert 5 <= await oldest_age(service) < 100
    finally:
        await service.spool.close()


async def test_last_event_per_type_keeps_invented_type_names_in_one_label(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(build_app(config(), InMemoryPublisher()))
    appt = sample("appointment")
    assert (await client.post("/apievents", data=body_bytes(appt), headers=appt["headers"])).ok
    for invented in ("Commlog", "Xyzzy1", "Xyzzy2"):
        headers = {"Authorization": TEST_KEY, "Event-Type": f"WatchTable: {invented}"}
        resp = await client.post("/apievents", data=b'[{"Num": 1}]', headers=headers)
        assert resp.status == 200, await resp.text()
    text = await (await client.get("/metrics")).text()
    found = re.findall(r"^od_bridge_last_event_timestamp_seconds\{([^}]*)\} ", text, re.M)
    assert sorted(found) == [
        'customer="main-office",type="Appointment"',
        'customer="main-office",type="other"',
    ]
    doc = await (await client.get("/status.json")).json()
    assert set(doc["offices"][0]["events"]) == {"Appointment", "other"}
