"""End to end: sync --apply against the emulator, the emulator fires, the bridge publishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config_loader import load
from bridge.emulator.app import DOC_CUSTOMER_KEY, Emulator, Settings
from bridge.service import Service
from tests.proxy import Proxy
from tests.support import free_port, office_config_text

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 8, 0, 0)


@dataclass
class Office:
    """An emulated office on a hand-driven clock, and a bridge configured to sync it."""

    emulator: Emulator
    clock: list[datetime]
    config: Path

    def at(self, seconds: int) -> datetime:
        self.clock[0] = T0 + timedelta(seconds=seconds)
        return self.clock[0]


@pytest.fixture
async def office(prefix: str, tmp_path: Path, proxy: Proxy) -> AsyncIterator[Office]:
    clock = [T0]
    emulator = Emulator(Settings(timezone=None), clock=lambda: clock[0])
    port = free_port()
    async with emulator.serve() as base:
        config = tmp_path / "od-bridge.yaml"
        config.write_text(
            office_config_text(
                port=port,
                amqp_url=proxy.url,
                prefix=prefix,
                api_url=base,
                subscriptions=[
                    "watch_table: Appointment, polling_seconds: 30, workstation: OD-SERVER",
                    "watch_table: Patient, polling_seconds: 30, workstation: OD-SERVER",
                    "ui_event_type: PatientSelected",
                ],
            )
        )
        yield Office(emulator, clock, config)


async def sync_apply(config: Path) -> None:
    # main() runs its own event loop: give it a thread while ours serves the emulator.
    assert await asyncio.to_thread(main, ["sync", "-c", str(config), "--apply"]) == 0


def subjects(collector: Any) -> set[str]:
    return {body["subject"] for body in collector.bodies()}


def acked_subjects(emulator: Emulator) -> set[str]:
    return {f"{table}/{key}" for table, key, _ in emulator.acked}


async def test_sync_fire_publish_consume(office: Office, prefix: str, consume: Any) -> None:
    await sync_apply(office.config)
    assert len(office.emulator.subs.of(DOC_CUSTOMER_KEY)) == 3
    service = Service(load(office.config, env={}))
    await service.start()
    try:
        appointments = await consume(f"{prefix}.db.appointment")
        patients = await consume(f"{prefix}.db.patient")
        selected = await consume(f"{prefix}.ui.patientselected")
        office.emulator.change_rows("Appointment", 1500, now=office.at(5))
        office.emulator.change_rows("Patient", 40, now=office.at(6))
        assert await office.emulator.fire_once(now=office.at(60)) == 2
        assert await office.emulator.select_patient(17) == [200]
        stats = office.emulator.stats()
        assert stats["posts"] == {"sent": 3, "ok": 3, "failed": 0}, stats  # 1000 + rest + patients
        by_table = stats["by_table"]
        await appointments.wait_for(by_table["Appointment"]["acked"])
        await patients.wait_for(by_table["Patient"]["acked"])
        [event] = (await selected.wait_for(1))[:1]
        assert subjects(appointments) | subjects(patients) == acked_subjects(office.emulator)
        clinic = selected.bodies()[0]["odclinic"]
        assert event.routing_key == f"main-office.{clinic}.OD-SERVER"
    finally:
        await service.stop()


async def test_broker_away_without_spool_answers_503_then_resends(
    office: Office, prefix: str, consume: Any, proxy: Proxy
) -> None:
    await sync_apply(office.config)
    service = Service(load(office.config, env={}))
    await service.start()
    try:
        appointments = await consume(f"{prefix}.db.appointment")
        office.emulator.change_rows("Appointment", 30, now=office.at(5))
        proxy.refusing = True
        proxy.cut()
        await asyncio.wait_for(service.publisher.lost.wait(), 10)
        await office.emulator.fire_once(now=office.at(60))
        stats = office.emulator.stats()
        assert stats["posts"]["failed"] >= 1 and stats["rows"]["acked"] == 0  # answered 503
        first_try = stats["rows"]["sent"]
        office.emulator.change_rows("Appointment", 10, now=office.at(70))
        proxy.refusing = False
        await asyncio.wait_for(service.publisher.connected.wait(), 15)
        await office.emulator.fire_once(now=office.at(600))  # Open Dental's next cycle resends
        acked = office.emulator.stats()["rows"]["acked"]
        assert acked == office.emulator.stats()["rows"]["sent"] - first_try > first_try
        await appointments.wait_for(acked)
        assert subjects(appointments) == acked_subjects(office.emulator)
    finally:
        await service.stop()


async def test_sync_apply_twice_is_empty(office: Office) -> None:
    await sync_apply(office.config)
    before = office.emulator.subs.of(DOC_CUSTOMER_KEY)
    await sync_apply(office.config)
    assert office.emulator.subs.of(DOC_CUSTOMER_KEY) == before
    code = await asyncio.to_thread(main, ["sync", "-c", str(office.config), "--exit-code"])
    assert code == 0


async def test_the_daemon_applies_the_plan_at_start(office: Office) -> None:
    office.config.write_text(office.config.read_text().replace("mode: off", "mode: apply"))
    service = Service(load(office.config, env={}))
    await service.start()
    try:
        await asyncio.wait_for(service.synced.wait(), 15)
        subs = office.emulator.subs.of(DOC_CUSTOMER_KEY)
        assert sorted(s["WatchTable"] or s["UiEventType"] for s in subs) == [
            "Appointment",
            "Patient",
            "PatientSelected",
        ]
        metrics = service.metrics.render().decode()
        assert (
            'od_bridge_sync_actions_total{action="create",customer="main-office",outcome="ok"} 3.0'
            in metrics
        )
    finally:
        await service.stop()
