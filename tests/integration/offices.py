"""A running daemon syncing emulated offices, all on one hand-driven clock (no waiting)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.config_loader import parse
from bridge.emulator.app import DOC_DEVELOPER_KEY, Emulator, Settings
from bridge.service import Service
from tests.support import AMQP_URL, free_port

T0 = datetime(2026, 11, 28, 9, 0, 0, tzinfo=ZoneInfo("America/Chicago")).timestamp()
POLLING_S = 30


@dataclass
class OfficeSpec:
    """One office: its name, zone, and where its database events are sent (None: the bridge)."""

    name: str
    timezone: str = "America/Chicago"
    patient_url: str | None = None  # a wrong EndPointUrl makes the Patient deliveries fail


@dataclass
class Running:
    """The daemon, one emulator per office, the shared clock, and helpers to drive them."""

    service: Service
    emulators: dict[str, Emulator]
    clock: list[float]
    base: str  # http://127.0.0.1:PORT of the daemon
    session: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)

    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds

    async def fire(self) -> None:
        """Every office runs one polling cycle at the current time (paused ones fire nothing)."""
        for emulator in self.emulators.values():
            await emulator.fire_once()

    async def sync(self) -> None:
        """One pass of the daemon's own syncer (what it does every sync.interval_s)."""
        await self.service.syncer.run_once()

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.base + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def metric(self, metric: str, /, **labels: str) -> float | None:
        async with self.session.get(self.base + "/metrics") as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    async def office(self, name: str) -> dict[str, Any]:
        doc = await self.get_json("/status.json")
        found: dict[str, Any] = next(o for o in doc["offices"] if o["customer"] == name)
        return found


async def _until(service: Service, done: Callable[[], bool], timeout: float = 30.0) -> None:
    async def wait() -> None:
        while not done():
            service.synced.clear()
            await service.synced.wait()

    await asyncio.wait_for(wait(), timeout)


def _customer(spec: OfficeSpec, key: str, api: str) -> str:
    patient = f", endpoint_url: '{spec.patient_url}'" if spec.patient_url else ""
    return f"""
  - name: {spec.name}
    customer_key: {key}
    timezone: {spec.timezone}
    api: {{url: "{api}", developer_key: {DOC_DEVELOPER_KEY}, min_interval_s: 0}}
    subscriptions:
      - {{watch_table: Appointment, polling_seconds: {POLLING_S}, workstation: OD-SERVER}}
      - {{watch_table: Patient, polling_seconds: {POLLING_S}, workstation: OD-SERVER{patient}}}
      - {{ui_event_type: PatientSelected}}"""


@contextlib.asynccontextmanager
async def running(prefix: str, specs: list[OfficeSpec], extra: str = "") -> AsyncIterator[Running]:
    """Start the emulators and a daemon (sync.mode apply) that has synced each office once."""
    clock = [T0]
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        emulators: dict[str, Emulator] = {}
        customers = []
        for i, spec in enumerate(specs):
            key = f"office-key-{i:04d}"
            zone = ZoneInfo(spec.timezone)
            emulator = Emulator(
                Settings(customer_keys=(key,), timezone=spec.timezone),
                clock=lambda zone=zone: datetime.fromtimestamp(clock[0], zone).replace(tzinfo=None),
            )
            api = await stack.enter_async_context(emulator.serve())
            emulators[spec.name] = emulator
            customers.append(_customer(spec, key, api))
        config = parse(
            f"""
listen: {{host: 127.0.0.1, port: {port}}}
public_url: http://127.0.0.1:{port}
amqp: {{url: "{AMQP_URL}", exchange_prefix: {prefix}}}
spool: {{enabled: false}}
customers:{"".join(customers)}
sync: {{mode: apply, interval_s: 3600}}
{extra}
""",
            env={},
        )
        service = Service(config, clock=lambda: clock[0])
        await service.start()
        stack.push_async_callback(service.stop)
        await _until(service, lambda: len(service.health.listings) == len(specs))
        run = Running(service, emulators, clock, f"http://127.0.0.1:{port}")
        stack.push_async_callback(run.session.close)
        yield run
