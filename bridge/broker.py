"""Reaching a RabbitMQ cluster: any of several node URLs, shuffled, named after this replica."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Sequence
from urllib.parse import urlsplit

import aio_pika
from aio_pika.connection import make_url

from .broker_errors import reason, safe_url
from .errors import PublishError

log = logging.getLogger("od_bridge.broker")


def connection_name(configured: str | None, role: str = "") -> str:
    """What RabbitMQ shows for our connections: the replica's identity (host name by default)."""
    name = configured or f"od-bridge@{socket.gethostname()}"
    return f"{name} {role}".strip()


class Unreachable(PublishError):
    """No node of the list answered: where we tried and why each failed (no password)."""

    def __init__(
        self, urls: Sequence[str], reasons: list[str], tried: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.url = ", ".join(safe_url(u) for u in urls)
        self.reason = "; ".join(reasons) if len(reasons) > 1 else reasons[0]
        self.tried = tuple(tried)  # (URL without password, reason) per node tried, in order
        super().__init__(f"cannot reach RabbitMQ at {self.url}: {self.reason}")


def where(url: str) -> str:
    """host:port of a broker URL, for logs (never its credentials)."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    return f"{parts.hostname or 'localhost'}:{parts.port or default}"


async def connect_any(
    urls: Sequence[str],
    *,
    name: str,
    connect_timeout: float = 10.0,
    heartbeat: int = 30,
    first: int = 0,
) -> tuple[aio_pika.abc.AbstractConnection, int]:
    """A connection to the first reachable node, trying every URL once from `first` on.

    Returns the connection and the index of its URL; PublishError when none answered.
    """
    reasons: list[str] = []
    tried: list[tuple[str, str]] = []
    for step in range(len(urls)):
        index = (first + step) % len(urls)
        # Built here rather than by aio_pika.connect, so a failed attempt is closed at once
        # instead of by its finaliser (a close coroutine nobody awaits).
        connection = aio_pika.Connection(
            make_url(urls[index], heartbeat=heartbeat),
            client_properties={"connection_name": name},
        )
        try:
            await connection.connect(timeout=connect_timeout)
        except Exception as exc:  # any failure to connect means "try the next node"
            why = reason(exc, urls[index])
            tried.append((safe_url(urls[index]), why))
            reasons.append(f"{safe_url(urls[index])}: {why}" if len(urls) > 1 else why)
            await close_quietly(connection.close())
            continue
        return connection, index
    raise Unreachable(urls, reasons or ["no URL"], tried)


async def close_quietly(closing: Awaitable[object]) -> None:
    """Await a close that may fail or hang on a dead peer (bounded, errors ignored)."""
    try:
        async with asyncio.timeout(2.0):
            await closing
    except Exception:  # noqa: S110 - the peer is gone; nothing to do about it
        pass


def shuffled(urls: Sequence[str]) -> list[str]:
    """The URLs in random order, so replicas spread over the cluster's nodes."""
    order = list(urls)
    random.shuffle(order)
    return order
