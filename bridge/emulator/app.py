"""Open Dental stand-in: the Subscriptions API plus event firing, for tests, demos, benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..opendental import DATETIME_FORMAT, NEVER, table
from .api import Gate, Subscriptions, live, routes
from .controls import control_routes
from .office import DEFAULT_TABLES, Counters, Office, Row
from .sender import Sender, record_failure

log = logging.getLogger("od_bridge.emulator")
DOC_DEVELOPER_KEY = "NFF6i0KrXrxDkZHt"  # the public test keys from Open Dental's docs
DOC_CUSTOMER_KEY = "VzkmZEaUWOjnQX2z"


@dataclass(frozen=True, slots=True)
class Settings:
    """How the emulated office behaves (every `od-bridge emulate` option has a field here)."""

    developer_keys: tuple[str, ...] = (DOC_DEVELOPER_KEY,)
    customer_keys: tuple[str, ...] = (DOC_CUSTOMER_KEY,)
    throttle_s: float = 0.0  # min seconds between API calls per customer key; 0 = no throttle
    page_size: int = 100  # GET /subscriptions page size (Limit is capped at it)
    allow_delete: bool = True  # False emulates the free tier: DELETE answers 401
    legacy: bool = False  # before 22.4.35: no Event-Type / Workstation headers
    failure_fields: bool = True  # FailureReason & co. on subscriptions (never with legacy)
    paused: bool = False  # the office's server asleep: nothing fires until resumed
    workstation: str = "OD-SERVER"  # the machine that fires (and where patients are selected)
    change_rate: float = 0.0  # rows changed per second by the simulated office (background)
    select_rate: float = 0.0  # PatientSelected events per second (background)
    tables: tuple[str, ...] = DEFAULT_TABLES
    batch_size: int = 1000
    resend_cap: timedelta = timedelta(days=3)
    post_timeout_s: float = 60.0
    tick_s: float = 1.0
    timezone: str | None = None
    seed: int = 4


class Emulator:
    """One emulated Open Dental office: API state, simulated database, and the event sender."""

    def __init__(
        self, settings: Settings | None = None, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.settings = settings or Settings()
        zone = ZoneInfo(self.settings.timezone) if self.settings.timezone else None
        self._clock = clock or (lambda: datetime.now(zone).replace(tzinfo=None))
        failure_fields = self.settings.failure_fields and not self.settings.legacy
        self.subs = Subscriptions(self.now, self.settings.allow_delete, failure_fields)
        self.paused = self.settings.paused
        self.gate = Gate(
            self.settings.developer_keys, self.settings.customer_keys, self.settings.throttle_s
        )
        self.office = Office(self.settings.seed)
        self.counters = Counters()
        self.acked: set[tuple[str, Any, str]] = set()  # (table, primary key, change stamp)
        self._busy: set[int] = set()
        self._retry_at: dict[int, datetime] = {}
        self.sender = Sender(self.settings.post_timeout_s, self.settings.legacy)
        self._rand = random.Random(self.settings.seed)  # noqa: S311 - simulation only

    def now(self) -> datetime:
        """Office wall-clock time, whole seconds (Open Dental's resolution)."""
        return self._clock().replace(microsecond=0)

    def change_rows(self, name: str, n: int = 1, now: datetime | None = None) -> list[Row]:
        """Have the office insert or edit `n` rows of table `name` (stamped `now`)."""
        rows = self.office.change(name, n, now or self.now())
        self.counters.add(name, "changed", n)
        return rows

    def delete_rows(self, name: str, n: int = 1, now: datetime | None = None) -> list[Row]:
        """Have the office delete `n` rows of table `name`; they fire as `{name}Deleted`."""
        rows = self.office.delete(name, n, now or self.now())
        self.counters.add(f"{name}Deleted", "changed", len(rows))
        return rows

    def _due(self, sub: dict[str, Any], now: datetime) -> bool:
        if not sub["WatchTable"] or sub["SubscriptionNum"] in self._busy:
            return False
        if not live(sub, now.strftime(DATETIME_FORMAT)):
            return False
        start = datetime.strptime(sub["DateTimeStart"], DATETIME_FORMAT)
        retry = self._retry_at.get(sub["SubscriptionNum"])
        return now >= start + timedelta(seconds=sub["PollingSeconds"]) and (
            retry is None or now >= retry
        )

    async def _fire(self, sub: dict[str, Any], now: datetime) -> None:
        num, name = sub["SubscriptionNum"], sub["WatchTable"]
        start = max(
            datetime.strptime(sub["DateTimeStart"], DATETIME_FORMAT), now - self.settings.resend_cap
        )
        rows = self.office.changed(name, start, now)
        info = table("db", name)
        headers = self.sender.headers(
            sub, "WatchTable", name, sub["Workstation"] or self.settings.workstation
        )
        size = self.settings.batch_size
        for i in range(0, len(rows), size):
            batch = rows[i : i + size]
            self.counters.posts_sent += 1
            self.counters.rows_sent += len(batch)
            self.counters.add(name, "sent", len(batch))
            status = await self.sender.post(sub["EndPointUrl"], batch, headers)
            if status != 200:
                # DateTimeStart stays: the next cycle resends everything since then.
                self.counters.posts_failed += 1
                self._retry_at[num] = now + timedelta(seconds=max(1, sub["PollingSeconds"]))
                record_failure(sub, status, now, self._retry_at[num])
                return
            self.counters.posts_ok += 1
            self.counters.rows_acked += len(batch)
            self.counters.add(name, "acked", len(batch))
            col = info.change_columns[0]
            self.acked.update((name, r.get(info.primary_key or ""), str(r.get(col))) for r in batch)
        self._retry_at.pop(num, None)
        if self.subs.items.get(num) is sub:  # it may have been deleted or replaced meanwhile
            # Every successful poll moves it, with or without rows: the office's heartbeat.
            sub["DateTimeStart"] = now.strftime(DATETIME_FORMAT)
            if "FailureReason" in sub:
                sub.update(FailureReason="", SubsequentFailures=0, DateTimeNextRetry=NEVER)

    async def fire_once(self, now: datetime | None = None) -> int:
        """Run one polling cycle at office time `now`: every due subscription sends; how many."""
        if self.paused:
            return 0
        now = (now or self.now()).replace(microsecond=0)
        due = [s for s in list(self.subs.items.values()) if self._due(s, now)]
        self._busy.update(s["SubscriptionNum"] for s in due)
        try:
            await asyncio.gather(*(self._fire(s, now) for s in due))
        finally:
            self._busy.difference_update(s["SubscriptionNum"] for s in due)
        return len(due)

    async def select_patient(self, pat_num: int, workstation: str | None = None) -> list[int]:
        """A user opens patient `pat_num`: one PatientSelected POST per matching subscription."""
        if self.paused:
            return []
        ws = workstation or self.settings.workstation
        when = self.now()
        now = when.strftime(DATETIME_FORMAT)
        targets = [
            s
            for s in self.subs.items.values()
            if s["UiEventType"] == "PatientSelected"
            and s["Workstation"].lower() in ("", ws.lower())
            and live(s, now)
        ]
        patient = self.office.patient(pat_num)
        statuses = []
        for sub in targets:  # fired once, never retried: a failure loses the event
            self.counters.ui_sent += 1
            status = await self.sender.post(
                sub["EndPointUrl"],
                patient,
                self.sender.headers(sub, "UiEventType", "PatientSelected", ws),
            )
            self.counters.ui_acked += status == 200
            self.counters.ui_failed += status != 200
            if status != 200:
                record_failure(sub, status, when, None)  # never retried
            elif "FailureReason" in sub:
                sub.update(FailureReason="", SubsequentFailures=0)
            statuses.append(status)
        return statuses

    def stats(self) -> dict[str, Any]:
        """Counters of changes, POSTs and rows sent and acknowledged, and API calls."""
        c = self.counters
        return {
            "rows": {
                "changed": sum(self.office.changes.values()),
                "sent": c.rows_sent,
                "acked": c.rows_acked,
                "acked_unique": len(self.acked),
            },
            "posts": {"sent": c.posts_sent, "ok": c.posts_ok, "failed": c.posts_failed},
            "paused": self.paused,
            "ui": {"sent": c.ui_sent, "acked": c.ui_acked, "failed": c.ui_failed},
            "by_table": c.by_table,
            "api": {
                "calls": self.gate.calls,
                "throttled": self.gate.throttled,
                "subscriptions": len(self.subs.items),
            },
        }

    async def aclose(self) -> None:
        """Close the sender's HTTP session."""
        await self.sender.aclose()

    async def _office_loop(self) -> None:
        tick, owed_rows, owed_selects = self.settings.tick_s, 0.0, 0.0
        pending: set[asyncio.Task[Any]] = set()
        try:
            while True:
                owed_rows += self.settings.change_rate * tick
                owed_selects += self.settings.select_rate * tick
                for _ in range(int(owed_rows)):
                    self.change_rows(self._rand.choice(self.settings.tables))
                owed_rows -= int(owed_rows)
                for _ in range(int(owed_selects)):
                    pending.add(asyncio.create_task(self.select_patient(self._rand.randint(1, 50))))
                owed_selects -= int(owed_selects)
                # Cycles run side by side; a slow endpoint only delays its own subscription.
                pending.add(asyncio.create_task(self.fire_once()))
                pending = {t for t in pending if not t.done()}
                await asyncio.sleep(tick)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def app(self) -> web.Application:
        """The aiohttp app: API routes and the `/emulator/*` controls."""
        app = web.Application()
        app.add_routes(routes(self.subs, self.gate, self.settings.page_size))
        app.add_routes(control_routes(self))
        return app

    @contextlib.asynccontextmanager
    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, background: bool = False
    ) -> AsyncIterator[str]:
        """Serve the API on host:port (0 = any free port); yields the `/api/v1` base URL.

        `background` runs the simulated office, started only once the port is bound, so a busy
        port fails before anything fires.
        """
        runner = web.AppRunner(self.app())
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0][1]
            async with contextlib.AsyncExitStack() as tasks:
                if background:
                    office = asyncio.create_task(self._office_loop(), name="emulator-office")
                    tasks.push_async_callback(_cancel, office)
                yield f"http://{host}:{bound}/api/v1"
        finally:
            await runner.cleanup()
            await self.aclose()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def run(settings: Settings, host: str, port: int) -> int:
    """Run the emulator with its office loops until SIGTERM/SIGINT (`od-bridge emulate`).

    A port that cannot be bound raises its OSError before anything is printed or started.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still interrupts
                loop.add_signal_handler(signum, stop.set)
        async with Emulator(settings).serve(host, port, background=True) as base:
            print(f"emulating Open Dental on {base} (stats: /emulator/stats)", flush=True)
            await stop.wait()

    asyncio.run(main())
    return 0
