"""The emulator fires events like Open Dental: batches, headers, only 200 advances, 3-day cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bridge.emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY, Emulator, Settings
from bridge.opendental import KNOWN_TABLES

T0 = datetime(2026, 11, 28, 9, 0, 0)
AUTH = {"Authorization": f"ODFHIR {DOC_DEVELOPER_KEY}/{DOC_CUSTOMER_KEY}"}


@dataclass
class Receiver:
    """A stand-in for the bridge: records every POST and answers `status`."""

    url: str = ""
    status: int = 200
    posts: list[tuple[dict[str, str], Any, int]] = field(default_factory=list)

    def rows(self, acked_only: bool = True) -> list[dict[str, Any]]:
        return [
            r
            for _, body, status in self.posts
            if status == 200 or not acked_only
            for r in (body if isinstance(body, list) else [body])
        ]


@dataclass
class Office:
    emulator: Emulator
    receiver: Receiver
    api: str
    clock: list[datetime]

    async def subscribe(self, body: dict[str, Any]) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{self.api}/subscriptions", json=body, headers=AUTH) as resp,
        ):
            assert resp.status == 201, await resp.text()
            created: dict[str, Any] = await resp.json()
            return created


async def office(settings: Settings) -> AsyncIterator[Office]:
    receiver = Receiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.posts.append(
            (dict(request.headers), orjson.loads(await request.read()), receiver.status)
        )
        return web.Response(status=receiver.status)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/apievents/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/apievents"
    clock = [T0]
    emulator = Emulator(settings, clock=lambda: clock[0])
    try:
        async with emulator.serve() as api:
            yield Office(emulator, receiver, api, clock)
    finally:
        await runner.cleanup()


@pytest.fixture
async def od() -> AsyncIterator[Office]:
    async for o in office(Settings()):
        yield o


async def db_sub(
    od: Office, table: str = "Appointment", polling: int = 30, **kw: Any
) -> dict[str, Any]:
    return await od.subscribe(
        {
            "EndPointUrl": f"{od.receiver.url}/{table}",
            "WatchTable": table,
            "PollingSeconds": polling,
        }
        | kw
    )


async def test_rows_arrive_in_batches_of_at_most_1000_with_headers(od: Office) -> None:
    await db_sub(od, Workstation="OD-SERVER")
    od.emulator.change_rows("Appointment", 3500, now=T0 + timedelta(seconds=1))
    assert await od.emulator.fire_once(T0 + timedelta(seconds=10)) == 0  # not due before 30 s
    assert await od.emulator.fire_once(T0 + timedelta(seconds=30)) == 1
    sizes = [len(body) for _, body, _ in od.receiver.posts]
    distinct = len(od.emulator.office.rows["Appointment"])  # edits of one row coalesce
    assert distinct > 2000
    assert sizes == [min(1000, distinct - i) for i in range(0, distinct, 1000)]
    headers = od.receiver.posts[0][0]
    assert headers["Authorization"] == DOC_CUSTOMER_KEY
    assert headers["Event-Type"] == "WatchTable: Appointment"
    assert headers["Workstation"] == "OD-SERVER"
    row = od.receiver.posts[0][1][0]
    assert row["DateTStamp"] == "2026-11-28 09:00:01" and isinstance(row["AptNum"], int)
    assert row["IsNewPatient"] in ("true", "false")
    stats = od.emulator.stats()
    assert stats["posts"] == {"sent": len(sizes), "ok": len(sizes), "failed": 0}
    assert stats["rows"]["sent"] == stats["rows"]["acked"] == sum(sizes)


async def test_changes_inside_one_interval_are_coalesced(od: Office) -> None:
    await db_sub(od)
    od.emulator.change_rows("Appointment", 300, now=T0 + timedelta(seconds=1))
    distinct = len(od.emulator.office.rows["Appointment"])
    await od.emulator.fire_once(T0 + timedelta(seconds=30))
    assert len(od.receiver.rows()) == distinct < 300  # each row's latest state once


async def test_only_200_advances_and_a_failed_cycle_is_resent_without_loss(od: Office) -> None:
    sub = await db_sub(od, polling=10)
    od.emulator.change_rows("Appointment", 1500, now=T0 + timedelta(seconds=2))
    od.receiver.status = 503
    await od.emulator.fire_once(T0 + timedelta(seconds=10))
    assert od.receiver.rows() == [] and od.emulator.stats()["posts"]["failed"] == 1
    (listed,) = [s for s in od.emulator.subs.of(DOC_CUSTOMER_KEY) if s["SubscriptionNum"] == 1]
    assert listed["DateTimeStart"] == sub["DateTimeStart"]  # not advanced
    # A 201 (or any other 2xx) is not success either.
    od.receiver.status = 201
    await od.emulator.fire_once(T0 + timedelta(seconds=20))
    assert listed["DateTimeStart"] == sub["DateTimeStart"]
    od.emulator.change_rows("Appointment", 10, now=T0 + timedelta(seconds=25))
    od.receiver.status = 200
    await od.emulator.fire_once(T0 + timedelta(seconds=30))
    assert listed["DateTimeStart"] == "2026-11-28 09:00:30"
    got = {(r["AptNum"], r["DateTStamp"]) for r in od.receiver.rows()}
    want = {
        (k, ts.strftime("%Y-%m-%d %H:%M:%S"))
        for k, (ts, _) in od.emulator.office.rows["Appointment"].items()
    }
    assert got == want  # every changed row arrived, in its latest state
    assert {
        r["PatNum"] for r in od.receiver.rows() if "LName" in r
    } == set()  # Patient rows predate it
    assert od.emulator.stats()["rows"]["acked_unique"] == len(want)
    await od.emulator.fire_once(T0 + timedelta(seconds=40))
    assert od.emulator.stats()["rows"]["acked_unique"] == len(want)  # nothing new, nothing resent


async def test_failed_cycle_waits_for_the_next_interval(od: Office) -> None:
    await db_sub(od, polling=30)
    od.emulator.change_rows("Appointment", 1, now=T0)
    od.receiver.status = 503
    await od.emulator.fire_once(T0 + timedelta(seconds=30))
    assert await od.emulator.fire_once(T0 + timedelta(seconds=31)) == 0
    assert await od.emulator.fire_once(T0 + timedelta(seconds=60)) == 1
    assert len(od.receiver.posts) == 2  # the same row, resent


async def test_resend_is_capped_at_three_days(od: Office) -> None:
    await db_sub(od, polling=60)
    od.emulator.change_rows("Appointment", 3, now=T0 + timedelta(seconds=5))
    od.receiver.status = 503
    await od.emulator.fire_once(T0 + timedelta(minutes=1))
    later = T0 + timedelta(days=3, hours=1)
    od.emulator.change_rows("Appointment", 2, now=later - timedelta(minutes=5))
    od.receiver.status = 200
    await od.emulator.fire_once(later)
    stamps = {r["DateTStamp"] for r in od.receiver.rows()}
    assert stamps == {(later - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")}


async def test_expired_subscription_does_not_fire(od: Office) -> None:
    await db_sub(od, DateTimeStop="2026-11-28 09:00:20")
    od.emulator.change_rows("Appointment", 1, now=T0)
    assert await od.emulator.fire_once(T0 + timedelta(minutes=5)) == 0


async def test_ui_event_fired_once_never_retried(od: Office) -> None:
    await od.subscribe(
        {"EndPointUrl": f"{od.receiver.url}/PatientSelected", "UiEventType": "PatientSelected"}
    )
    await od.subscribe(
        {
            "EndPointUrl": f"{od.receiver.url}/x",
            "UiEventType": "PatientSelected",
            "Workstation": "OTHER-PC",
        }
    )
    od.receiver.status = 503
    assert await od.emulator.select_patient(17, workstation="FRONTDESK1") == [503]
    od.receiver.status = 200
    await od.emulator.fire_once(T0 + timedelta(minutes=5))
    assert len(od.receiver.posts) == 1  # gone for good
    async with (
        aiohttp.ClientSession() as s,
        s.post(od.api.replace("/api/v1", "/emulator/select/17")) as r,
    ):
        assert (await r.json())["statuses"] == [200]
    headers, body, _ = od.receiver.posts[-1]
    assert headers["Event-Type"] == "UiEventType: PatientSelected"
    assert headers["Workstation"] == "OD-SERVER"
    assert body["PatNum"] == 17 and "LName" in body
    assert od.emulator.stats()["ui"] == {"sent": 2, "acked": 1, "failed": 1}


async def test_legacy_office_sends_no_event_type_or_workstation() -> None:
    async for od in office(Settings(legacy=True)):
        await db_sub(od)
        await od.subscribe(
            {"EndPointUrl": f"{od.receiver.url}/PatientSelected", "UiEventType": "PatientSelected"}
        )
        od.emulator.change_rows("Appointment", 1, now=T0)
        await od.emulator.fire_once(T0 + timedelta(seconds=30))
        await od.emulator.select_patient(3)
        for headers, _, _ in od.receiver.posts:
            assert "Event-Type" not in headers and "Workstation" not in headers
            assert headers["Authorization"] == DOC_CUSTOMER_KEY
        assert len(od.receiver.posts) == 2


async def test_unreachable_endpoint_counts_as_failure(od: Office) -> None:
    await od.subscribe(
        {
            "EndPointUrl": "http://127.0.0.1:9/apievents",
            "WatchTable": "Patient",
            "PollingSeconds": 1,
        }
    )
    od.emulator.change_rows("Patient", 1, now=T0)
    await od.emulator.fire_once(T0 + timedelta(seconds=2))
    assert od.emulator.stats()["posts"] == {"sent": 1, "ok": 0, "failed": 1}


async def test_every_table_generator_has_its_key_and_change_column(od: Office) -> None:
    for t in (t for t in KNOWN_TABLES if t.kind == "db"):
        (row,) = od.emulator.change_rows(t.name, 1, now=T0)
        assert t.primary_key in row, t.name
        assert row[t.change_columns[0]] == "2026-11-28 09:00:00", t.name


async def test_every_successful_poll_moves_date_time_start_and_failures_are_recorded(
    od: Office,
) -> None:
    sub = await db_sub(od, polling=10)
    num = sub["SubscriptionNum"]
    live = od.emulator.subs.items[num]
    # No changes at all: the poll still succeeds, so DateTimeStart moves (the heartbeat).
    assert await od.emulator.fire_once(T0 + timedelta(seconds=10)) == 1
    assert live["DateTimeStart"] == "2026-11-28 09:00:10"
    assert not od.receiver.posts

    od.receiver.status = 503
    od.emulator.change_rows("Appointment", 1, now=T0 + timedelta(seconds=11))
    for at in (20, 30):
        await od.emulator.fire_once(T0 + timedelta(seconds=at))
    assert live["DateTimeStart"] == "2026-11-28 09:00:10"
    assert live["FailureReason"] == "The remote server returned an error: (503)."
    assert live["SubsequentFailures"] == 2
    assert live["DateTimeLastFailure"] == "2026-11-28 09:00:30"
    assert live["DateTimeNextRetry"] == "2026-11-28 09:00:40"

    od.receiver.status = 200
    await od.emulator.fire_once(T0 + timedelta(seconds=40))
    assert live["DateTimeStart"] == "2026-11-28 09:00:40"
    assert (live["FailureReason"], live["SubsequentFailures"]) == ("", 0)
    assert live["DateTimeLastFailure"] == "2026-11-28 09:00:30"  # the last one stays on record


async def test_a_paused_office_fires_nothing_until_resumed(od: Office) -> None:
    await db_sub(od, polling=10)
    od.emulator.change_rows("Appointment", 2, now=T0 + timedelta(seconds=1))
    async with aiohttp.ClientSession() as s:
        root = od.api.removesuffix("/api/v1")
        async with s.post(f"{root}/emulator/office/pause") as resp:
            assert await resp.json() == {"paused": True}
        assert await od.emulator.fire_once(T0 + timedelta(seconds=60)) == 0
        assert await od.emulator.select_patient(5) == []
        async with s.get(f"{root}/emulator/stats") as resp:
            assert (await resp.json())["paused"] is True
        async with s.post(f"{root}/emulator/office/resume") as resp:
            assert await resp.json() == {"paused": False}
    assert await od.emulator.fire_once(T0 + timedelta(seconds=61)) == 1
    assert od.receiver.rows()
