"""The README's consumer (examples/consumer.py) runs against a real bridge and a real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest

from bridge import contract
from examples.consumer import Options, Poison, Schemas, SeenIds, consume
from tests.support import AMQP_URL, sample

pytestmark = pytest.mark.integration


@pytest.fixture
async def queue_name(prefix: str) -> AsyncIterator[str]:
    """A unique queue name for the consumer; it and its DLQ are deleted afterwards."""
    name = f"{prefix}.consumer-example"
    yield name
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.queue_delete(f"{name}.dlq")


async def post(url: str, body: Any, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
            await response.read()
            return response.status


class Handled:
    """A handler: records each CloudEvent (and each attempt) and wakes a waiter."""

    def __init__(self, fail: Callable[[Any, int], Awaitable[None]] | None = None) -> None:
        self.events: list[Any] = []
        self.attempts: dict[str, int] = {}
        self.fail = fail
        self._changed = asyncio.Event()

    async def __call__(self, event: Any) -> None:
        attempt = self.attempts[event.get_id()] = self.attempts.get(event.get_id(), 0) + 1
        self._changed.set()
        if self.fail is not None:
            await self.fail(event, attempt)
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async def until() -> None:
            while not check():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)


async def start(queue: str, prefix: str, handled: Handled, options: Options) -> asyncio.Task[None]:
    options.started = asyncio.Event()
    bindings = [(f"{prefix}.db.appointment", "main-office.#")]
    task = asyncio.create_task(consume(AMQP_URL, queue, bindings, handled, options))
    await asyncio.wait_for(options.started.wait(), 10)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def queue_depth(name: str) -> int:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(name, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


async def dead_letters(queue: str, count: int, timeout: float = 10.0) -> list[str]:
    """The message ids of the first `count` messages in a dead-letter queue (consumed)."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        ids: list[str] = []

        async def collect() -> None:
            async with declared.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    ids.append(message.message_id or "")
                    if len(ids) == count:
                        return

        await asyncio.wait_for(collect(), timeout)
        return ids


async def test_the_example_consumer_handles_each_row_once(
    bridge: str, prefix: str, queue_name: str
) -> None:
    delivery = sample("appointment")
    rows, headers = delivery["body"], delivery["headers"]
    handled, options = Handled(), Options(seen=SeenIds(size=1000))
    task = await start(queue_name, prefix, handled, options)
    try:
        assert await post(bridge, rows, headers) == 200
        # Open Dental resends the same batch (a later batch of its cycle failed): same ids.
        assert await post(bridge, rows, headers) == 200
        # Another customer's event does not match the binding `main-office.#`.
        other = {**headers, "Authorization": "other-office-key-0001"}
        assert await post(bridge, rows[:1], other) == 200
        # Then a new state of appointment 18: a new id, handled.
        changed = {**rows[0], "AptStatus": "Complete", "DateTStamp": "2026-11-28 09:00:00"}
        assert await post(bridge, [changed], headers) == 200

        await handled.wait_for(lambda: len(handled.events) == 3)
        # The queue is FIFO and the example handles one message at a time: the two duplicates
        # were skipped before the third event was handled.
        assert options.seen.duplicates == 2
        events = handled.events
        assert [e.get_subject() for e in events] == [
            "Appointment/18",
            "Appointment/19",
            "Appointment/18",
        ]
        assert [e.get_data()["AptStatus"] for e in events] == ["Scheduled", "Complete", "Complete"]
        assert len({e.get_id() for e in events}) == 3
        assert {e.get_extension("odcustomer") for e in events} == {"main-office"}
        assert events[0].get_type() == "com.opendental.db.Appointment"
        # Nothing is left waiting, nothing was dead-lettered.
        assert await queue_depth(queue_name) == 0
        assert await queue_depth(f"{queue_name}.dlq") == 0
        assert options.dead_lettered == 0
    finally:
        await stop(task)


async def test_poison_is_dead_lettered_once_and_transient_errors_retry_a_bounded_number_of_times(
    bridge: str, prefix: str, queue_name: str
) -> None:
    """Was: one bad event looped 5,284 times in 5 s. Now each message is handled or parked."""
    rows, headers = sample("appointment")["body"], sample("appointment")["headers"]

    async def fail(event: Any, attempt: int) -> None:
        number = event.get_data()["AptNum"]
        if number == 18 and attempt == 1:
            raise ConnectionError("database restarting")  # transient: the retry succeeds
        if number == 19:
            raise ConnectionError("database down for good")  # transient, but never passes
        if number == 20:
            raise Poison("AptNum 20 is not ours")

    async def package_schema(url: str) -> dict[str, Any]:
        schema: dict[str, Any] = orjson.loads(contract.shipped(url.split("/schemas/", 1)[1]))
        return schema

    handled = Handled(fail)
    options = Options(retries=2, backoff_s=0.01, schemas=Schemas(package_schema))
    task = await start(queue_name, prefix, handled, options)
    try:
        third = {**rows[0], "AptNum": 20}
        wrong_type = {**rows[0], "AptNum": 21, "IsHygiene": 7}  # not a boolean: fails the schema
        assert await post(bridge, [*rows, third, wrong_type], headers) == 200
        # Not a CloudEvent at all, published straight to the bridge's exchange.
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(f"{prefix}.db.appointment", ensure=False)
            await exchange.publish(
                aio_pika.Message(b"{not json", message_id="garbage-1"),
                routing_key="main-office.0.OD-SERVER",
            )
        parked = await dead_letters(f"{queue_name}.dlq", 4)
        assert options.dead_lettered == 4
        assert [e.get_data()["AptNum"] for e in handled.events] == [18]
        assert handled.attempts[handled.events[0].get_id()] == 2  # failed once, then succeeded
        attempts = sorted(handled.attempts.values())
        assert attempts == [1, 2, 3]  # 20: once (poison); 18: twice; 19: 1 + 2 retries, no more
        assert options.retried == 3
        by_id = {e.get_id(): e.get_data()["AptNum"] for e in handled.events}
        assert len(parked) == 4 and "garbage-1" in parked  # 19, 20, 21 (schema), the garbage
        assert not set(parked) & set(by_id)
        assert await queue_depth(queue_name) == 0  # nothing requeued, nothing looping
    finally:
        await stop(task)
