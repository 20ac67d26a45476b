"""`od-bridge tail`: print live events from the exchanges through a temporary queue."""

from __future__ import annotations

import asyncio
import difflib
import logging
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import aio_pika
import orjson

from .broker import close_quietly, connect_any, connection_name, shuffled
from .config import Config
from .errors import BridgeError, PublishError
from .events import exchange_name
from .opendental import KNOWN_TABLES, table
from .publisher import BROKER_ERRORS, declare_event_exchange
from .signals import on_stop_signals
from .typenames import OTHER


def exchanges(prefix: str, types: Sequence[str], allowed: Sequence[str] = ()) -> list[str]:
    """The exchanges to bind: the named types (db and ui forms), or every known one.

    A name the bridge does not know (nor `allowed`, the config's allow_unknown and
    subscriptions) is refused before anything is declared: tail must not create exchanges.
    """
    if not types:
        names = [(t.kind, t.name) for t in KNOWN_TABLES] + [("db", "Unknown"), ("ui", "Unknown")]
        return [exchange_name(prefix, kind, name) for kind, name in names]
    known = {t.name.lower(): t.name for t in KNOWN_TABLES} | {
        n.lower(): n for n in (*allowed, "Unknown", OTHER)
    }
    unknown = [name for name in types if name.lower() not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.lower(), list(known), n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{known[close[0]]}'?)" if close else ""))
        raise BridgeError(
            f"unknown event type {', '.join(hints)}: nothing declared; name a known type, "
            "or list a newer table in a customer's allow_unknown"
        )
    names = []
    for name in types:
        kinds = {t.kind for t in KNOWN_TABLES if t.name.lower() == name.lower()} or {"db", "ui"}
        names += [(k, table(k, known[name.lower()]).name) for k in sorted(kinds)]
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
    # refuses before connecting
    bound = exchanges(config.amqp.exchange_prefix, types, config.type_names)
    amqp = config.amqp
    try:
        connection, _ = await connect_any(
            shuffled(amqp.urls), name=connection_name(amqp.connection_name, "tail")
        )
    except (*BROKER_ERRORS, PublishError) as exc:
        raise BridgeError(f"cannot reach RabbitMQ ({exc})") from exc
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop.set)
    lost: list[object] = []

    def on_close(*_: object) -> None:
        # A plain connection (any node of the list): a loss ends the tail with a clear line,
        # rather than leaving it silent.
        lost.append(True)
        stop.set()

    connection.close_callbacks.add(on_close)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for name in bound:
            exchange = await declare_event_exchange(channel, config.amqp.exchange_prefix, name)
            await queue.bind(exchange, routing_key="#")
        wanted = set(customers)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                with suppress(orjson.JSONDecodeError):
                    event = orjson.loads(message.body)
                    if not wanted or event.get("odcustomer") in wanted:
                        print(line(event, pretty), flush=True)

        await queue.consume(on_message)
        print(f"tailing {config.amqp.exchange_prefix}.* (Ctrl-C to stop)", file=sys.stderr)
        await stop.wait()
    except BROKER_ERRORS:
        lost.append(True)  # lost while setting up
    finally:
        connection.close_callbacks.discard(on_close)
        await close_quietly(connection.close())  # a lost connection may fail its close too
    if lost:
        raise BridgeError("the connection to RabbitMQ was lost; run `od-bridge tail` again")


def tail(config: Config, *, types: Sequence[str], customers: Sequence[str], pretty: bool) -> int:
    """Run until interrupted; print each event as it arrives."""
    # A lost connection is reported in one sentence below; aiormq's own traceback of it
    # (through logging's last-resort handler: tail configures no logging) is noise here.
    # Only while tailing: whoever called tail in-process gets aiormq's lines back after.
    aiormq_log = logging.getLogger("aiormq")
    level = aiormq_log.level
    aiormq_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(_tail(config, types, customers, pretty))
    finally:
        aiormq_log.setLevel(level)
    return 0
