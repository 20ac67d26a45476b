"""What the bridge declares on RabbitMQ: per-type exchanges and the `{prefix}.unrouted` queue."""

from __future__ import annotations

import aio_pika

from .config import Amqp
from .errors import BridgeError
from .events import exchange_name
from .opendental import KNOWN_TABLES


class UnroutedTypeMismatch(BridgeError):
    """`{prefix}.unrouted` exists as another queue type than amqp.unrouted_queue_type."""


def base_exchanges(prefix: str) -> list[str]:
    """The exchanges declared at every connect: one per known type, plus the unknown ones."""
    names = [exchange_name(prefix, t.kind, t.name) for t in KNOWN_TABLES]
    return names + [exchange_name(prefix, k, "Unknown") for k in ("db", "ui")]


async def declare_event_exchange(
    channel: aio_pika.abc.AbstractChannel, prefix: str, name: str
) -> aio_pika.abc.AbstractExchange:
    """A per-type exchange as od-bridge declares it: durable topic, `{prefix}.unrouted` as its
    alternate exchange. Declare it only this way — RabbitMQ refuses other arguments."""
    return await channel.declare_exchange(
        name,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": f"{prefix}.unrouted"},
    )


async def declare_unrouted_exchange(channel: aio_pika.abc.AbstractChannel, prefix: str) -> None:
    """The fanout alternate exchange: metadata only, so any live node declares it."""
    await channel.declare_exchange(f"{prefix}.unrouted", aio_pika.ExchangeType.FANOUT, durable=True)


async def declare_unrouted_queue(channel: aio_pika.abc.AbstractChannel, settings: Amqp) -> None:
    """The bounded queue behind the alternate exchange, of the configured type, bound to it.

    A quorum queue (the default) lives on a majority of the cluster's nodes, so it stays
    available when one node dies; a classic one lives on its home node only. Raises
    UnroutedTypeMismatch when it exists as the other type (RabbitMQ cannot convert it).
    """
    name = f"{settings.exchange_prefix}.unrouted"
    arguments: dict[str, object] = {"x-max-length": settings.unrouted_max_length}
    if settings.unrouted_queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"  # drop-head overflow: supported since 3.10
    try:
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)  # type: ignore[arg-type]
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        if "x-queue-type" in str(exc):
            other = "classic" if settings.unrouted_queue_type == "quorum" else "quorum"
            raise UnroutedTypeMismatch(
                f"the queue {name} exists as a {other} queue but amqp.unrouted_queue_type is "
                f"{settings.unrouted_queue_type}: migrate it (README, 'Running on a RabbitMQ "
                f"cluster': move its messages, delete it, let the bridge declare it) or set "
                f"amqp.unrouted_queue_type: {other}"
            ) from exc
        raise
    await queue.bind(name, routing_key="#")
