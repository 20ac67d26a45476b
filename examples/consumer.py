"""A consumer of od-bridge events: durable queue, CloudEvents SDK, dedupe on message_id.

    pip install aio-pika cloudevents
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python examples/consumer.py

Start the bridge once before (it declares the exchanges this binds to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import aio_pika
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event

log = logging.getLogger("consumer")
Handler = Callable[[BaseCloudEvent], Awaitable[None]]


class SeenIds:
    """The last `size` message ids handled (a bounded LRU): a redelivered duplicate is skipped."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def __contains__(self, message_id: str) -> bool:
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return True
        return False

    def add(self, message_id: str) -> None:
        """Remember an id once its event is handled."""
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


def decode(message: aio_pika.abc.AbstractIncomingMessage) -> BaseCloudEvent:
    """The CloudEvent of one message (structured mode: the whole event is the JSON body)."""
    return from_rabbitmq_event(
        RabbitMQMessage(headers={}, content_type=message.content_type, body=message.body)
    )


async def consume(
    url: str,
    exchange: str,
    queue: str,
    binding_key: str,
    handle: Handler,
    *,
    seen: SeenIds | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Bind durable `queue` to `exchange`; handle each event once, in order, until cancelled."""
    seen = SeenIds() if seen is None else seen
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        # Passive: the bridge declares its exchanges (with their alternate exchange) at start.
        source = await channel.get_exchange(exchange, ensure=True)
        durable = await channel.declare_queue(queue, durable=True)
        await durable.bind(source, routing_key=binding_key)
        if started is not None:
            started.set()
        async with durable.iterator() as messages:
            async for message in messages:  # one at a time: the queue's order is kept
                try:
                    # Acked when the block ends normally; requeued if handling raises.
                    async with message.process(requeue=True):
                        message_id = message.message_id or ""
                        if message_id in seen:
                            seen.duplicates += 1  # Open Dental resent it: already handled
                            continue
                        await handle(decode(message))
                        seen.add(message_id)  # only after handling succeeded
                except Exception:
                    log.exception("event %s failed; requeued", message.message_id)


async def print_event(event: BaseCloudEvent) -> None:
    """Example handler: one line per event (a real one writes to a database, calls an API, …)."""
    data = event.get_data()
    status = data.get("AptStatus") if isinstance(data, dict) else None
    print(event.get_extension("odcustomer"), event.get_subject(), status)


def main() -> None:
    """Consume appointments of every customer until Ctrl-C."""
    logging.basicConfig(level=logging.INFO)
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    # Routing keys are {customer}.{clinic}.{workstation}: `main-office.#` = one office's events.
    coro = consume(
        url, "opendental.db.appointment", "my-app.appointments", "main-office.#", print_event
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


if __name__ == "__main__":
    main()
