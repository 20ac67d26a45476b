"""The README's consumer (examples/consumer.py) runs against a real bridge and a real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest

from examples.consumer import SeenIds, consume
from tests.support import AMQP_URL, sample

pytestmark = pytest.mark.integration


@pytest.fixture
async def queue_name(prefix: str) -> AsyncIterator[str]:
    """A unique durable queue name for the consumer; the queue is deleted afterwards."""
    name = f"{prefix}.consumer-example"
    yield name
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def post(url: str, body: Any, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
            await response.read()
            return response.status


class Handled:
    """The example's handler: records each CloudEvent and wakes a waiter."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        async def until() -> None:
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.events


async def test_the_example_consumer_handles_each_row_once(
    bridge: str, prefix: str, queue_name: str
) -> None:
    delivery = sample("appointment")
    rows, headers = delivery["body"], delivery["headers"]
    handled, seen, started = Handled(), SeenIds(size=1000), asyncio.Event()
    task = asyncio.create_task(
        consume(
            AMQP_URL,
            f"{prefix}.db.appointment",
            queue_name,
            "main-office.#",
            handled,
            seen=seen,
            started=started,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 10)
        assert await post(bridge, rows, headers) == 200
        # Open Dental resends the same batch (a later batch of its cycle failed): same ids.
        assert await post(bridge, rows, headers) == 200
        # Another customer's event does not match the binding `main-office.#`.
        other = {**headers, "Authorization": "other-office-key-0001"}
        assert await post(bridge, rows[:1], other) == 200
        # Then a new state of appointment 18: a new id, handled.
        changed = {**rows[0], "AptStatus": "Complete", "DateTStamp": "2026-11-28 09:00:00"}
        assert await post(bridge, [changed], headers) == 200

        events = await handled.wait_for(3)
        # The queue is FIFO and the example handles one message at a time: the two duplicates
        # were skipped before the third event was handled.
        assert seen.duplicates == 2
        assert [e.get_subject() for e in events] == [
            "Appointment/18",
            "Appointment/19",
            "Appointment/18",
        ]
        assert [e.get_data()["AptStatus"] for e in events] == ["Scheduled", "Complete", "Complete"]
        assert len({e.get_id() for e in events}) == 3
        assert {e.get_extension("odcustomer") for e in events} == {"main-office"}
        assert events[0].get_type() == "com.opendental.db.Appointment"

        # Nothing is left waiting or was requeued: the last message handled was the last sent.
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue_name, durable=True, passive=True)
            assert declared.declaration_result.message_count == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
