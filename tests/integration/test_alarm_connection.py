"""A resource alarm blocks the publishing connection: the bridge keeps it rather than leave it.

Leaving it (the old behaviour: a channel that cannot be opened meant "connection unusable")
stranded the rows written into it; RabbitMQ stored them once the alarm cleared, after newer
rows sent meanwhile on a new connection. That is what put late copies behind later rows in
test_memory_alarm_blocks_publishers under load.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import aio_pika
import pytest

from bridge.errors import PublishError
from bridge.events import Message
from bridge.publisher import AmqpPublisher
from tests.integration.faults import fault_config
from tests.rabbit_nodes import RabbitNode

pytestmark = pytest.mark.integration


class Notice(logging.Handler):
    """Sets `seen` when aiormq logs a line containing `text` (its only sign of a block)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def row(prefix: str, n: int) -> Message:
    return Message(
        exchange=f"{prefix}.db.appointment",
        routing_key="appointment.main-office.0",
        message_id=uuid.uuid4().hex,
        type="opendental.db.appointment",
        timestamp=int(time.time()),
        body=b'{"AptNum": %d}' % n,
    )


async def test_a_blocked_connection_is_kept_and_used_again(private_rabbit: RabbitNode) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    publisher = AmqpPublisher(fault_config(prefix, private_rabbit.url, None).amqp)
    await publisher.start()
    notice, unblocked = Notice("was blocked"), Notice("was unblocked")
    aiormq_log = logging.getLogger("aiormq.connection")
    # Another test may have quieted aiormq for the whole process (`tail` sets it to CRITICAL):
    # its warnings are the only sign of a block, so this logger must let them through.
    saved_level = aiormq_log.level
    aiormq_log.setLevel(logging.WARNING)
    aiormq_log.addHandler(notice)
    aiormq_log.addHandler(unblocked)
    try:
        assert await publisher.publish([row(prefix, 1)])
        connection = publisher._connection
        await asyncio.to_thread(private_rabbit.ctl, "set_vm_memory_high_watermark", "0.0000001")
        try:
            # A row on its way as the alarm starts: written into the connection, RabbitMQ
            # blocks it (reads no more from it) and says so.
            assert publisher._channel is not None
            exchange = await publisher._channel.get_exchange(f"{prefix}.db.appointment")
            stray = asyncio.create_task(
                exchange.publish(aio_pika.Message(b"{}"), "appointment.main-office.0")
            )
            await asyncio.wait_for(notice.seen.wait(), 30)
            assert publisher.blocked
            with pytest.raises(PublishError):  # refused without writing while blocked
                await publisher.publish([row(prefix, 2)])
            # The stray row's confirm would time out, and the publisher renew the channel:
            # no channel opens on a blocked connection.
            await publisher._renew_channel()
            assert publisher._connection is connection, "left the blocked connection"
            assert not publisher.lost.is_set()
        finally:
            limit = str(private_rabbit.cluster.memory_limit)
            await asyncio.to_thread(
                private_rabbit.ctl, "set_vm_memory_high_watermark", "absolute", limit
            )
        await asyncio.wait_for(unblocked.seen.wait(), 30)
        # The stray row's confirm went with its channel (closed by the renewal): unconfirmed,
        # as a timed-out row is. Then a fresh channel on the same connection confirms again.
        await asyncio.wait_for(asyncio.gather(stray, return_exceptions=True), 30)
        assert await publisher.publish([row(prefix, 3)])
        assert publisher._connection is connection
    finally:
        aiormq_log.removeHandler(notice)
        aiormq_log.removeHandler(unblocked)
        aiormq_log.setLevel(saved_level)
        await publisher.close()
