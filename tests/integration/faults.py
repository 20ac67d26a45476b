"""Fault-test bookkeeping: numbered rows from concurrent senders, counted on arrival."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from bridge.config import Config
from bridge.config_loader import parse
from bridge.publisher import declare_event_exchange
from tests.support import TEST_KEY

STAMP = "2026-11-28 08:00:00"


def fault_config(
    prefix: str,
    amqp_url: str,
    spool: Path | None,
    *,
    port: int = 0,
    max_events: int = 1_000_000,
    heartbeat_s: int = 2,
) -> Config:
    """A bridge config with short deadlines, so each fault test ends within seconds."""
    spool_yaml = (
        f'{{enabled: true, path: "{spool}", max_events: {max_events}}}'
        if spool
        else "{enabled: false}"
    )
    return parse(config_text(prefix, amqp_url, spool_yaml, port, heartbeat_s), env={})


def config_text(prefix: str, amqp_url: str, spool_yaml: str, port: int, heartbeat_s: int) -> str:
    """The YAML of fault_config (also written to a file for a bridge in a subprocess)."""
    return f"""
listen: {{host: 127.0.0.1, port: {port}, shutdown_grace_s: 0}}
amqp:
  url: "{amqp_url}"
  exchange_prefix: {prefix}
  retry_budget_s: 0.5
  confirm_timeout_s: 0.5
  heartbeat_s: {heartbeat_s}
spool: {spool_yaml}
customers:
  - {{name: main-office, customer_key: {TEST_KEY}, timezone: America/Chicago}}
log: {{level: WARNING}}
"""


@dataclass
class Ledger:
    """What the clients were told (200 or not) and what the consumer received."""

    acked: set[int] = field(default_factory=set)
    refused: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    arrivals: list[int] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Clients wait at request `hold_at` until `go` is set: a fault that takes long to switch
    # on (rabbitmqctl on a busy machine) must not find the whole load already sent.
    hold_at: int | None = None
    go: asyncio.Event = field(default_factory=asyncio.Event)

    def missing(self) -> set[int]:
        """Rows answered 200 that never arrived."""
        return self.acked - set(self.arrivals)

    def duplicates(self) -> int:
        """Deliveries beyond the first of each row."""
        return len(self.arrivals) - len(set(self.arrivals))

    def out_of_order(self) -> list[int]:
        """Per client, rows whose first copy arrived after a later row's first copy.

        First copies, as a consumer deduping on the message id sees them: the bridge keeps
        that order. A second copy (resent after its confirm was lost: a timeout, a dropped or
        blocked connection, while RabbitMQ had stored the row anyway) can arrive after later
        rows; that is a duplicate, not a reordering (README, Guarantees).
        """
        first: dict[int, int] = {}
        for i, row in enumerate(self.arrivals):
            first.setdefault(row, i)
        bad: list[int] = []
        for client in {row // 1_000_000 for row in first}:
            rows = sorted((r for r in first if r // 1_000_000 == client), key=first.__getitem__)
            bad += [b for a, b in itertools.pairwise(rows) if b < a]
        return bad

    async def until(self, check: Callable[[], bool], event: asyncio.Event, timeout: float) -> None:
        """Await `check()` becoming true, re-checked each time `event` fires."""

        async def wait() -> None:
            while not check():
                event.clear()
                await event.wait()

        await asyncio.wait_for(wait(), timeout)

    async def all_arrived(self, timeout: float = 30) -> None:
        """Await every acked row at the consumer."""
        try:
            await self.until(lambda: not self.missing(), self.arrived, timeout)
        except TimeoutError:
            raise AssertionError(
                f"{len(self.missing())} of {len(self.acked)} acked rows missing after {timeout} s"
            ) from None

    async def answered(self, count: int, timeout: float = 30) -> None:
        """Await `count` answered requests in total."""
        try:
            await self.until(lambda: sum(self.answers.values()) >= count, self.progress, timeout)
        except TimeoutError:
            raise AssertionError(
                f"only {dict(self.answers)} answers after {timeout} s, wanted {count}"
            ) from None


async def client(
    url: str, ledger: Ledger, number: int, requests: int, rows: int, resend: int = 20
) -> None:
    """One Open Dental-like sender: numbered rows, resending a refused batch like OD does."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for r in range(requests):
            if r == ledger.hold_at:
                await ledger.go.wait()
            ids = [number * 1_000_000 + r * rows + i for i in range(rows)]
            body = orjson.dumps([{"AptNum": i, "DateTStamp": STAMP, "Note": "x"} for i in ids])
            headers = {"Authorization": TEST_KEY, "Event-Type": "WatchTable: Appointment"}
            for _ in range(resend):
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        status = response.status
                        await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                ledger.answers[status] += 1
                ledger.progress.set()
                if status == 200:
                    ledger.acked.update(ids)
                    break
                ledger.refused += 1
                await ledger.progress.wait()  # resend after others made progress, never spin


async def load(
    url: str, ledger: Ledger, clients: int = 4, requests: int = 40, rows: int = 5
) -> None:
    """Several concurrent clients, each sending its own numbered stream."""
    await asyncio.gather(*(client(url, ledger, n + 1, requests, rows) for n in range(clients)))


class Consumer:
    """A durable queue bound to the appointment exchange, consumed over a robust connection."""

    def __init__(self, prefix: str, ledger: Ledger, amqp_url: str) -> None:
        self.prefix = prefix
        self.ledger = ledger
        self.amqp_url = amqp_url
        self.queue_name = f"{prefix}.faulttest"
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        """Declare the exchange and queue, start consuming."""
        self.connection = await aio_pika.connect_robust(self.amqp_url, reconnect_interval=0.5)
        channel = await self.connection.channel()
        exchange = await declare_event_exchange(
            channel, self.prefix, f"{self.prefix}.db.appointment"
        )
        queue = await channel.declare_queue(self.queue_name, durable=True)
        await queue.bind(exchange, "#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.ledger.arrivals.append(orjson.loads(message.body)["data"]["AptNum"])
            self.ledger.arrived.set()
            await message.ack()

        await queue.consume(on_message)

    async def stop(self) -> None:
        """Close, then delete the queue over a plain connection.

        In that order: a robust connection still restoring its topology after a broker restart
        would declare the queue again after a delete.
        """
        if self.connection is not None:
            await self.connection.close()
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(self.queue_name)


def report(name: str, ledger: Ledger) -> dict[str, Any]:
    """One line of numbers for the test log (shown with -s or on failure)."""
    numbers = {
        "fault": name,
        "acked_rows": len(ledger.acked),
        "arrived": len(set(ledger.arrivals)),
        "duplicates": ledger.duplicates(),
        "refused_requests": ledger.refused,
        "answers": dict(ledger.answers),
    }
    print(numbers)
    return numbers
