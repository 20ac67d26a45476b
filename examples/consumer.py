"""A consumer of od-bridge events to copy: manual acks, dead-letter queue, bounded retries, dedupe.

    pip install aio-pika cloudevents jsonschema
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python examples/consumer.py

Start the bridge once before (it declares the exchanges this binds to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event
from jsonschema import Draft202012Validator

log = logging.getLogger("consumer")
Handler = Callable[[BaseCloudEvent], Awaitable[None]]


class Poison(Exception):
    """An event that can never be handled (bad data, say): dead-letter it, don't retry."""


class SeenIds:
    """The last `size` event ids handled (a bounded LRU): a redelivered duplicate is skipped."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def __contains__(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        return False

    def add(self, event_id: str) -> None:
        """Remember an id once its event is handled."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


class Schemas:
    """Validators of `data` by the event's `dataschema` URL, fetched once each (optional step)."""

    def __init__(self, fetch: Callable[[str], Awaitable[dict[str, Any]]] | None = None) -> None:
        self._fetch = fetch or _http_json
        self._validators: dict[str, Draft202012Validator] = {}

    async def check(self, event: BaseCloudEvent) -> None:
        """Raise Poison when the event's data does not match its schema."""
        url = event.get_dataschema()
        if not url:
            return
        validator = self._validators.get(url)
        if validator is None:
            validator = Draft202012Validator(await self._fetch(url))
            self._validators[url] = validator
        error = next(validator.iter_errors(event.get_data()), None)
        if error is not None:  # the path only: a value could be a patient's data
            raise Poison(f"data does not match {url} at /{'/'.join(map(str, error.path))}")


async def _http_json(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        schema: dict[str, Any] = await response.json(content_type=None)
        return schema


def decode(message: aio_pika.abc.AbstractIncomingMessage) -> BaseCloudEvent:
    """The CloudEvent of one message (structured mode: the whole event is the JSON body)."""
    try:
        return from_rabbitmq_event(
            RabbitMQMessage(headers={}, content_type=message.content_type, body=message.body)
        )
    except Exception as exc:  # whatever the SDK raises for a body that is no CloudEvent
        raise Poison(f"not a CloudEvent: {type(exc).__name__}") from None


@dataclass
class Options:
    """How a consumer behaves; the defaults suit most."""

    prefetch: int = 50  # unacked messages in flight: bounds memory and redelivery after a crash
    retries: int = 3  # attempts after the first, for errors that may pass (database down, …)
    backoff_s: float = 0.5  # first retry's delay, doubled each time
    queue_type: str = "quorum"  # replicated; classic queues lose messages with their node
    schemas: Schemas | None = None  # validate `data` against `dataschema` before handling
    # Ids handled in this process; None when the handler dedupes itself (in its database).
    seen: SeenIds | None = field(default_factory=SeenIds)
    started: asyncio.Event | None = None  # set once the queue is bound
    dead_lettered: int = 0
    retried: int = 0


async def declare(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    bindings: Sequence[tuple[str, str]],
    queue_type: str = "quorum",
) -> aio_pika.abc.AbstractQueue:
    """`queue` (durable, dead-lettering to `{queue}.dlq`) bound to each (exchange, binding key)."""
    await channel.declare_queue(
        f"{queue}.dlq", durable=True, arguments={"x-queue-type": queue_type}
    )
    durable = await channel.declare_queue(
        queue,
        durable=True,
        arguments={
            "x-queue-type": queue_type,
            # Rejected without requeue → the default exchange → the queue named {queue}.dlq.
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"{queue}.dlq",
        },
    )
    for exchange, key in bindings:
        # Passive: the bridge declares its exchanges (with their alternate exchange) at start.
        source = await channel.get_exchange(exchange, ensure=True)
        await durable.bind(source, routing_key=key)
    return durable


async def handle_one(
    message: aio_pika.abc.AbstractIncomingMessage, handle: Handler, options: Options
) -> None:
    """Handle one message, then ack it, or dead-letter it; never requeue (no endless loop)."""
    event_id = message.message_id or ""
    seen = options.seen
    if seen is not None and event_id and event_id in seen:
        seen.duplicates += 1  # Open Dental resent it: already handled
        await message.ack()
        return
    try:
        event = decode(message)
        if options.schemas is not None:
            await options.schemas.check(event)
        for attempt in range(options.retries + 1):
            try:
                await handle(event)
                break
            except Poison:
                raise
            except Exception as exc:
                if attempt == options.retries:
                    raise Poison(f"still failing after {attempt + 1} attempts: {exc!r}") from exc
                options.retried += 1
                await asyncio.sleep(options.backoff_s * 2**attempt)
    except Poison as exc:
        options.dead_lettered += 1
        # One line, no traceback and no body (it may hold PHI); the message waits in the DLQ.
        log.error("event %s dead-lettered: %s", event_id, exc)
        await message.reject(requeue=False)
        return
    if seen is not None:
        seen.add(event_id)  # only after handling succeeded
    await message.ack()


async def consume(
    url: str,
    queue: str,
    bindings: Sequence[tuple[str, str]],
    handle: Handler,
    options: Options | None = None,
) -> None:
    """Consume `queue` bound to `bindings`, one event at a time in queue order, until cancelled."""
    options = options or Options()
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=options.prefetch)
        durable = await declare(channel, queue, bindings, options.queue_type)
        if options.started is not None:
            options.started.set()
        async with durable.iterator() as messages:
            async for message in messages:  # sequential: the queue's order is kept
                await handle_one(message, handle, options)


async def print_event(event: BaseCloudEvent) -> None:
    """Example handler: one line per event (a real one writes to a database, calls an API, …)."""
    data = event.get_data()
    status = data.get("AptStatus") if isinstance(data, dict) else None
    print(event.get_extension("odcustomer"), event.get_subject(), status)


def main() -> None:
    """Consume appointments of one office until Ctrl-C, validating against the bridge's schemas."""
    logging.basicConfig(level=logging.INFO)
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    # Routing keys are {customer}.{clinic}.{workstation}: `main-office.#` = one office's events.
    bindings = [("opendental.db.appointment", "main-office.#")]
    coro = consume(url, "my-app.appointments", bindings, print_event, Options(schemas=Schemas()))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


if __name__ == "__main__":
    main()
