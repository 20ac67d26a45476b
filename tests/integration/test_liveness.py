"""Office liveness end to end: a sleeping office turns red within one sync pass, and back."""

from __future__ import annotations

import aiohttp
import pytest

from bridge.health import silent_after_s

from .offices import POLLING_S, OfficeSpec, running

pytestmark = pytest.mark.integration
LAG = "od_bridge_subscription_lag_seconds"


async def test_paused_office_turns_red_within_one_pass_and_green_when_resumed(prefix: str) -> None:
    async with running(prefix, [OfficeSpec("main-office")]) as run:
        emulator = run.emulators["main-office"]
        emulator.change_rows("Appointment", 3)
        run.advance(POLLING_S)
        await run.fire()
        assert emulator.counters.posts_ok >= 1 and emulator.counters.posts_failed == 0
        await run.sync()
        appt = {"customer": "main-office", "kind": "db", "name": "Appointment"}
        assert await run.metric(LAG, **appt) == 0
        office = await run.office("main-office")
        assert office["status"] == "green", office["reasons"]
        assert "Appointment" in office["events"]
        assert await run.metric(
            "od_bridge_last_event_timestamp_seconds", customer="main-office", type="Appointment"
        )

        # The office's server falls asleep (over the emulator's control API, as a person would).
        api = emulator.settings
        assert not api.paused
        async with aiohttp.ClientSession() as s:
            base = run.service.config.customers[0].api
            assert base is not None
            root = base.url.removesuffix("/api/v1")
            async with s.post(f"{root}/emulator/office/pause") as resp:
                assert (await resp.json()) == {"paused": True}
        # One sync interval's worth of office time with nothing fired; then the daemon's pass.
        run.advance(silent_after_s(POLLING_S) + 1)
        await run.fire()
        await run.sync()
        lag = await run.metric(LAG, **appt)
        assert lag is not None and lag > silent_after_s(POLLING_S)
        office = await run.office("main-office")
        assert office["status"] == "red"
        assert any("Appointment: silent" in r for r in office["reasons"]), office["reasons"]

        async with aiohttp.ClientSession() as s, s.post(f"{root}/emulator/office/resume") as resp:
            assert (await resp.json()) == {"paused": False}
        await run.fire()  # the first cycle after waking: no changes, DateTimeStart still moves
        await run.sync()
        assert await run.metric(LAG, **appt) == 0
        assert (await run.office("main-office"))["status"] == "green"


async def test_failing_and_missing_subscriptions_and_a_failed_listing_are_visible(
    prefix: str,
) -> None:
    spec = OfficeSpec("main-office", patient_url="http://127.0.0.1:9/nowhere/Patient")
    async with running(prefix, [spec]) as run:
        emulator = run.emulators["main-office"]
        emulator.change_rows("Patient", 2)
        run.advance(POLLING_S)
        await run.fire()  # Patient deliveries go nowhere: the office records the failure
        await run.sync()
        patient = {"customer": "main-office", "kind": "db", "name": "Patient"}
        assert await run.metric("od_bridge_subscription_failing", **patient) == 1
        assert await run.metric("od_bridge_subscription_failures", **patient) == 1
        assert await run.metric("od_bridge_subscription_last_failure_timestamp_seconds", **patient)
        office = await run.office("main-office")
        assert office["status"] == "amber"
        assert any("Patient: failing" in r for r in office["reasons"]), office["reasons"]

        # Someone deletes a subscription by hand in Open Dental; the plan-only pass sees it gone.
        num = next(n for n, s in emulator.subs.items.items() if s["WatchTable"] == "Appointment")
        del emulator.subs.items[num]
        run.service.syncer.config = run.service.config.model_copy(
            update={"sync": run.service.config.sync.model_copy(update={"mode": "plan"})}
        )
        await run.sync()
        appt = {"customer": "main-office", "kind": "db", "name": "Appointment"}
        assert await run.metric("od_bridge_subscription_present", **appt) == 0
        assert (await run.office("main-office"))["status"] == "red"

        # The office's API refuses the keys: the listing fails, and that shows too.
        emulator.gate.developer_keys.clear()
        await run.sync()
        assert await run.metric("od_bridge_sync_listing_ok", customer="main-office") == 0
        office = await run.office("main-office")
        assert any("cannot list subscriptions" in r for r in office["reasons"]), office["reasons"]
