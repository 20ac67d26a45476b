"""`od-bridge tail`: print live events from the exchanges through a temporary queue."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import aio_pika
import orjson

from .config import Config
from .errors import BridgeError
from .events import exchange_name
from .opendental import KNOWN_TABLES, table
from .publisher import BROKER_ERRORS, declare_event_exchange
from .signals import on_stop_signals


def exchanges(prefix: str, types: Sequence[str]) -> list[str]:
    """The exchanges to bind: the named types (db and ui forms), or every known one."""
    if not types:
        names = [(t.kind, t.name) for t in KNOWN_TABLES] + [("db", "Unknown"), ("ui", "Unknown")]
    else:
        names = []
        for name in types:
            kinds = {t.kind for t in KNOWN_TABLES if t.name.lower() == name.lower()} or {"db", "ui"}
            names += [(k, table(k, name).name) for k in sorted(kinds)]
    return [exchange_name(prefix, kind, name) for kind, name in names]


def line(event: dict[str, Any], pretty: bool) -> str:
    """One output line: the CloudEvent as JSON, or a short human summary."""
    if not pretty:
        return orjson.dumps(event).decode()
    return (
        f"{event.get('time', '')}  {event.get('odcustomer', '')}  {event.get('type', '')}  "
        f"{event.get('subject', '-')}  ws={event.get('odworkstation', '-')}  id={event.get('id')}"
    )


async def _tail(
    config: Config, types: Sequence[str], customers: Sequence[str], pretty: bool
) -> None:
    url = config.amqp.url.get_secret_value()
    try:
        connection = await aio_pika.connect_robust(url, timeout=10)
    except BROKER_ERRORS as exc:
        raise BridgeError(f"cannot reach RabbitMQ ({type(exc).__name__})") from exc
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop.set)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for name in exchanges(config.amqp.exchange_prefix, types):
            exchange = await declare_event_exchange(channel, config.amqp.exchange_prefix, name)
            await queue.bind(exchange, routing_key="#")
        print(f"tailing {config.amqp.exchange_prefix}.* (Ctrl-C to stop)", file=sys.stderr)
        wanted = set(customers)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                with suppress(orjson.JSONDecodeError):
                    event = orjson.loads(message.body)
                    if not wanted or event.get("odcustomer") in wanted:
                        print(line(event, pretty), flush=True)

        await queue.consume(on_message)
        await stop.wait()


def tail(config: Config, *, types: Sequence[str], customers: Sequence[str], pretty: bool) -> int:
    """Run until interrupted; print each event as it arrives."""
    asyncio.run(_tail(config, types, customers, pretty))
    return 0
