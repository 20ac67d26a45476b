"""AmqpPublisher on both paths (batched, public) against a real RabbitMQ: order, returns, leaks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from bridge.config import Amqp
from bridge.errors import PublishError
from bridge.events import APP_ID, CONTENT_TYPE, Message, exchange_name
from bridge.opendental import KNOWN_TABLES
from bridge.publisher import AmqpPublisher
from tests.support import AMQP_URL, assert_path

pytestmark = pytest.mark.integration
URL = AMQP_URL


async def _broker() -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(URL, timeout=5)


@pytest.fixture
async def prefix(need_broker: None) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    connection = await _broker()
    async with connection:
        channel = await connection.channel()
        for queue in (f"{name}.unrouted", f"{name}.probe"):
            await channel.queue_delete(queue)
        names = [exchange_name(name, t.kind, t.name) for t in KNOWN_TABLES]
        names += [exchange_name(name, k, "Unknown") for k in ("db", "ui")]
        for exchange in [*names, f"{name}.unrouted"]:
            await channel.exchange_delete(exchange)


async def _probe_queue(
    connection: aio_pika.abc.AbstractConnection, prefix: str
) -> aio_pika.abc.AbstractQueue:
    """`{prefix}.probe`, bound to every Appointment row (deleted by the prefix fixture)."""
    channel = await connection.channel()
    queue = await channel.declare_queue(f"{prefix}.probe", durable=False)
    await queue.bind(exchange_name(prefix, "db", "Appointment"), routing_key="#")
    return queue


def _messages(prefix: str, count: int, start: int = 0) -> list[Message]:
    return [
        Message(
            exchange=exchange_name(prefix, "db", "Appointment"),
            routing_key=f"office.{i % 3}.ws",
            message_id=f"id-{start + i}",
            type="com.opendental.db.Appointment",
            timestamp=1_795_000_000 + i,
            body=b'{"n": %d}' % (start + i) + b" " * (i % 300),
        )
        for i in range(count)
    ]


async def test_rows_arrive_in_order_with_properties(prefix: str, publish_path: str) -> None:
    publisher = AmqpPublisher(
        # Generous deadlines: this is about order and properties, on a shared machine.
        Amqp(
            url=URL,
            exchange_prefix=prefix,
            max_in_flight=64,
            retry_budget_s=20,
            confirm_timeout_s=20,
        )
    )
    await publisher.start()
    try:
        connection = await _broker()
        async with connection:
            queue = await _probe_queue(connection, prefix)
            batches = [_messages(prefix, 700, start=k * 1000) for k in range(3)]
            await asyncio.gather(*(publisher.publish(batch) for batch in batches))
            assert_path(publisher, publish_path)
            got: list[aio_pika.abc.AbstractIncomingMessage] = []
            async with queue.iterator() as it:
                async for message in it:
                    got.append(message)
                    await message.ack()
                    if len(got) == 2100:
                        break
        for batch in batches:
            ids = [m.message_id for m in got if m.message_id in {b.message_id for b in batch}]
            assert ids == [b.message_id for b in batch]  # order kept within each request
        sample = got[0]
        assert sample.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert sample.content_type == CONTENT_TYPE
        assert sample.app_id == APP_ID
        assert sample.type == "com.opendental.db.Appointment"
        assert sample.timestamp is not None
        underlay = await publisher._channel.get_underlay_channel()  # type: ignore[union-attr]
        assert underlay.message_id_delivery_tag == {}  # nothing left behind
        assert publisher._window._value == 64  # every slot given back
    finally:
        await publisher.close()


async def test_returned_row_fails_the_request(prefix: str, publish_path: str) -> None:
    connection = await _broker()
    publisher = AmqpPublisher(Amqp(url=URL, exchange_prefix=prefix, retry_budget_s=0.3))
    await publisher.start()
    try:
        async with connection:
            channel = await connection.channel()
            # Without the unrouted queue even the alternate exchange cannot route: returned.
            await channel.queue_delete(f"{prefix}.unrouted")
            with pytest.raises(PublishError):
                await publisher.publish(_messages(prefix, 5))
        underlay = await publisher._channel.get_underlay_channel()  # type: ignore[union-attr]
        # Rows after the first returned one may still await the broker's answer: await them
        # (our done-callbacks were added before gather's, so they have run when it returns).
        late = [f for f in underlay.confirmations.values() if isinstance(f, asyncio.Future)]
        await asyncio.wait_for(asyncio.gather(*late, return_exceptions=True), 5)
        assert publisher._window._value == publisher.settings.max_in_flight
        assert underlay.message_id_delivery_tag == {}
    finally:
        await publisher.close()


async def test_concurrent_requests_coalesce_and_cancellation_leaks_nothing(
    prefix: str, publish_path: str
) -> None:
    connection = await _broker()
    publisher = AmqpPublisher(Amqp(url=URL, exchange_prefix=prefix, max_in_flight=50))
    await publisher.start()
    try:
        async with connection:
            queue = await _probe_queue(connection, prefix)
            singles = [_messages(prefix, 1, start=i) for i in range(300)]
            await asyncio.gather(*(publisher.publish(m) for m in singles[:50]))
            assert_path(publisher, publish_path)
            writes = publisher._batch.coalescer.writes
            await asyncio.gather(*(publisher.publish(m) for m in singles[50:100]))
            if publish_path == "fast":
                # Requests of one loop turn share one write (with free window slots for all).
                assert publisher._batch.coalescer.writes - writes == 1
            await asyncio.gather(*(publisher.publish(m) for m in singles[100:]))
            # Cancel some requests at every stage (waiting for a slot, queued, confirming).
            tasks = [
                asyncio.create_task(publisher.publish(_messages(prefix, 7, start=10_000 + 10 * i)))
                for i in range(60)
            ]
            for step, task in enumerate(tasks):
                if step % 3 == 0:
                    task.cancel()
                if step % 10 == 0:
                    await asyncio.sleep(0)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            finished = sum(1 for r in results if r is True)
            assert finished >= 40
            # A barrier: the broker confirms in order, so once this one is confirmed every
            # late confirmation of the cancelled requests has settled too.
            await publisher.publish(_messages(prefix, 1, start=99_999))
            assert publisher._window._value == 50
            underlay = await publisher._channel.get_underlay_channel()  # type: ignore[union-attr]
            assert underlay.message_id_delivery_tag == {}
            assert underlay.confirmations == {}
            declared = await queue.channel.declare_queue(f"{prefix}.probe", passive=True)
            assert declared.declaration_result.message_count >= 300 + 7 * finished
    finally:
        await publisher.close()


async def test_an_attempt_past_its_deadline_sends_its_rows_in_order(
    prefix: str, publish_path: str
) -> None:
    # More rows than the deadline lets through: the rows not sent by then must be the tail.
    # (Timed per row, an earlier row's timer could expire while it waited for the channel
    # lock and a later row still take it: sent, and confirmed, before the earlier one.)
    publisher = AmqpPublisher(
        Amqp(url=URL, exchange_prefix=prefix, max_in_flight=5000, confirm_timeout_s=0.2)
    )
    await publisher.start()
    try:
        connection = await _broker()
        async with connection:
            queue = await _probe_queue(connection, prefix)
            rows = _messages(prefix, 4000)
            outcomes = await publisher._attempt(rows, time.monotonic() + 0.2)
            assert_path(publisher, publish_path)
            # One channel keeps order: once this row arrives, every row sent before it has.
            marker = _messages(prefix, 1, start=99_999)
            assert await publisher._attempt(marker, time.monotonic() + 20) == [None]
            arrived: list[str] = []
            async with asyncio.timeout(30), queue.iterator() as it:
                async for message in it:
                    await message.ack()
                    if message.message_id == marker[0].message_id:
                        break
                    arrived.append(message.message_id or "")
        assert arrived == [m.message_id for m in rows[: len(arrived)]]
        confirmed = [i for i, outcome in enumerate(outcomes) if outcome is None]
        assert all(i < len(arrived) for i in confirmed)
        assert publisher._window._value == 5000  # every slot given back
    finally:
        await publisher.close()


async def test_a_fast_path_that_misbehaves_is_replaced_by_the_public_one(
    prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An aiormq/pamqp change that alters what goes on the wire: the probe arrives altered.
    monkeypatch.setattr("bridge.amqp_fast._APP_ID", b"\x05other")
    publisher = AmqpPublisher(Amqp(url=URL, exchange_prefix=prefix))
    await publisher.start()
    try:
        assert publisher.fast is False
        warnings = [r for r in caplog.records if "batched publishing disabled" in r.getMessage()]
        assert len(warnings) == 1
        assert await publisher.publish(_messages(prefix, 3)) is True  # row by row instead
    finally:
        await publisher.close()
