"""Publisher protocol; AmqpPublisher (topology, confirms, deadlines) and InMemoryPublisher."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from . import broker_errors
from .amqp_fast import VERIFIED_WITH, BatchPublisher, Outcome, connection_blocked, self_check
from .config import Amqp
from .errors import PublishError
from .events import APP_ID, CONTENT_TYPE, Message, exchange_name
from .opendental import KNOWN_TABLES

log = logging.getLogger("od_bridge.publisher")

# What a broker that went away (or never came) raises, from a connect to a confirm: all mean
# "not now, try again", and every part that talks to RabbitMQ catches this one tuple. It is
# aio-pika's own list, the one its robust connection reconnects on: AMQP errors, OSError
# (so ConnectionError and TimeoutError), RuntimeError (aiormq's channel or connection in an
# invalid state), StopAsyncIteration (the peer closed during the handshake), pamqp's errors.
BROKER_ERRORS = aio_pika.exceptions.CONNECTION_EXCEPTIONS


class Publisher(Protocol):
    """Takes messages and returns only once every one of them is confirmed, else raises."""

    @property
    def ready(self) -> bool:
        """True while messages can be confirmed right now."""
        ...

    async def publish(self, messages: Sequence[Message]) -> bool:
        """Make all messages durable in order, else raise PublishError (or SpoolError).

        True when the broker confirmed every one; False when they were kept durably another
        way (the spool) and will reach the broker later.
        """
        ...


class InMemoryPublisher:
    """A Publisher for tests and demos: keeps what it was given; can be told to fail."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail: bool = False

    @property
    def ready(self) -> bool:
        """True unless told to fail."""
        return not self.fail

    async def publish(self, messages: Sequence[Message]) -> bool:
        """Keep the messages, or raise PublishError when `fail` is set."""
        if self.fail:
            raise PublishError("in-memory publisher told to fail")
        self.messages.extend(messages)
        return True


def amqp_message(message: Message) -> aio_pika.Message:
    """The aio-pika message of an event: persistent, CloudEvents content type, id, type, time."""
    return aio_pika.Message(
        message.body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        timestamp=datetime.fromtimestamp(message.timestamp, UTC),
        app_id=APP_ID,
    )


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


class AmqpPublisher:
    """Publishes to RabbitMQ with confirms and `mandatory`, declaring the topology it needs."""

    use_fast_path = True  # False: always aio-pika's public per-message path (tests run both)

    def __init__(self, settings: Amqp, *, connection_name: str = "od-bridge") -> None:
        self.settings = settings
        self.prefix = settings.exchange_prefix
        self._connection_name = connection_name
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._clashes: set[str] = set()  # exchanges RabbitMQ refused to declare (logged once)
        self._declare_lock = asyncio.Lock()
        self._window = asyncio.Semaphore(settings.max_in_flight)
        self.connected = asyncio.Event()  # set while connected
        self.lost = asyncio.Event()  # set while the connection is down (after a first connect)
        self.on_ready: list[Callable[[], object]] = []  # called on every (re)connect
        self._batch = BatchPublisher(self._window)
        self._connector: asyncio.Task[None] | None = None
        self.problem: str | None = None  # why the last connect failed (for /readyz), else None
        self._closing = False  # our own close: the connection loss is no news
        self._probe: aio_pika.abc.AbstractChannel | None = None  # for metrics RPCs only
        # The fast path's self-check verdict: None until decided on a live channel.
        self.fast: bool | None = None if self.use_fast_path else False
        self._underlay: Any = None  # the aiormq channel under self._channel, once fetched
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}  # public path's handles

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, *, wait: bool = True) -> None:
        """Connect and declare the topology; if the broker is down, retry in the background."""
        try:
            await self._connect()
        except Exception as exc:  # any failure to connect means "try again later", never a crash
            why = self._failed(exc, "broker unreachable at start; retrying")
            if wait:
                raise PublishError(f"cannot reach RabbitMQ at {self._url}: {why}") from exc
            self._connector = asyncio.create_task(self._connect_forever(), name="amqp-connect")
        else:
            self._connected_log()

    @property
    def _url(self) -> str:
        return broker_errors.safe_url(self.settings.url.get_secret_value())

    def _failed(self, exc: BaseException, message: str) -> str:
        """Log a failed connect with its reason (again only when the reason changes)."""
        why = broker_errors.reason(exc, self.settings.url.get_secret_value())
        if why != self.problem:
            log.warning(message, extra={"url": self._url, "reason": why})
        self.problem = why
        return why

    def _connected_log(self) -> None:
        self.problem = None
        log.info("connected to broker", extra={"url": self._url})

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception as exc:  # task boundary: keep trying whatever the broker did
                delay = min(delay * 2, 5.0)
                self._failed(exc, "broker still unreachable")
            else:
                self._connected_log()
                return

    async def _connect(self) -> None:
        url = self.settings.url.get_secret_value()
        connection = await aio_pika.connect_robust(
            url,
            timeout=10,
            heartbeat=self.settings.heartbeat_s,
            reconnect_interval=1,
            client_properties={"connection_name": self._connection_name},
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare_base(channel)
            if self.fast is None:
                await self._check_fast_path(channel)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            await connection.close()
            # Not a broker outage: our topology clashes with what exists. Say what to do; the
            # caller keeps retrying, so fixing it on the broker needs no restart here.
            log.error(
                "RabbitMQ refused the topology: an exchange or the unrouted queue exists with "
                "other arguments (e.g. a changed amqp.unrouted_max_length); delete it or "
                "restore the setting",
                extra={"prefix": self.prefix},
            )
            raise
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection, self._channel = connection, channel
        self._exchanges.clear()  # handles of the old channel
        self._up()

    def _up(self) -> None:
        self.lost.clear()
        self.connected.set()
        for callback in self.on_ready:
            callback()

    def _on_close(self, *_: object) -> None:
        self.connected.clear()
        self.lost.set()
        if not self._closing:
            log.warning("connection to broker lost")

    def _on_reconnect(self, *_: object) -> None:
        log.info("reconnected to broker")
        self._up()

    async def close(self) -> None:
        """Close the connection (waiting publishes fail)."""
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self.connected.clear()

    @property
    def ready(self) -> bool:
        """True while the connection is up and not blocked (a publish can be confirmed now)."""
        return (
            self.connected.is_set()
            and self._connection is not None
            and not self._connection.is_closed
            and not self.blocked
        )

    @property
    def blocked(self) -> bool:
        """True while RabbitMQ blocks publishing (memory or disk alarm: connection.blocked)."""
        return connection_blocked(self._connection)

    async def unrouted_depth(self, timeout_s: float = 1.0) -> int | None:
        """Messages waiting in `{prefix}.unrouted`, or None when the broker cannot say now."""
        if self._connection is None or not self.ready:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                # A channel of its own: a failed RPC closes its channel, never the publishing one.
                if self._probe is None or self._probe.is_closed:
                    self._probe = await self._connection.channel()
                queue = await self._probe.declare_queue(f"{self.prefix}.unrouted", passive=True)
        except Exception as exc:  # a metric must never fail the scrape
            log.debug("unrouted depth unavailable", extra={"error": type(exc).__name__})
            return None
        count: int | None = queue.declaration_result.message_count
        return count

    # --- topology --------------------------------------------------------------------------
    async def _declare_base(self, channel: aio_pika.abc.AbstractChannel) -> None:
        unrouted = f"{self.prefix}.unrouted"
        fanout = await channel.declare_exchange(
            unrouted, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            unrouted,
            durable=True,
            arguments={"x-max-length": self.settings.unrouted_max_length},
        )
        await queue.bind(fanout, routing_key="#")
        names = [exchange_name(self.prefix, t.kind, t.name) for t in KNOWN_TABLES]
        names += [exchange_name(self.prefix, k, "Unknown") for k in ("db", "ui")]
        for name in names:
            await self._declare_exchange(channel, name)

    async def _declare_exchange(self, channel: aio_pika.abc.AbstractChannel, name: str) -> None:
        await declare_event_exchange(channel, self.prefix, name)
        self._declared.add(name)

    async def _ensure_exchanges(self, messages: Sequence[Message]) -> None:
        missing = {m.exchange for m in messages} - self._declared
        if not missing or self._channel is None:
            return
        async with self._declare_lock:
            for name in sorted(missing - self._declared):
                try:
                    await self._declare_exchange(self._channel, name)
                except aio_pika.exceptions.ChannelPreconditionFailed:
                    if name not in self._clashes:  # once per exchange: it repeats every retry
                        self._clashes.add(name)
                        log.error(
                            "RabbitMQ refused to declare the exchange of a new event type: it "
                            "exists with other arguments; its rows cannot be published (they "
                            "wait in the spool) until it is deleted or re-declared as a durable "
                            "topic exchange with the bridge's alternate-exchange",
                            extra={"exchange": name},
                        )
                    raise

    # --- publishing ------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> bool:
        """Publish in order; retry the unconfirmed tail within the budget; else PublishError."""
        pending = list(messages)
        if not pending:
            return True
        deadline = time.monotonic() + self.settings.retry_budget_s
        # The first try runs outside tenacity: building a retry controller per request cost
        # ~10 % of the CPU of a single-event request, and most requests need no retry.
        pending, error = await self._attempt(pending, deadline)
        if not pending:
            return True
        await asyncio.sleep(random.uniform(0, 0.05))  # noqa: S311 - jitter, not crypto
        retrying = AsyncRetrying(
            stop=stop_after_delay(max(deadline - time.monotonic(), 0.0)),
            wait=wait_random_exponential(multiplier=0.05, max=0.5),
            retry=retry_if_exception_type(PublishError),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    pending, error = await self._attempt(pending, deadline)
                    if pending:
                        raise PublishError(f"not confirmed: {type(error).__name__}") from error
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            confirmed = len(messages) - len(pending)
            raise PublishError(str(cause) if cause else "not confirmed", confirmed) from cause
        return True

    async def _attempt(
        self, pending: list[Message], deadline: float
    ) -> tuple[list[Message], BaseException | None]:
        """One try: publish all pending; return the tail from the first unconfirmed one on."""
        remaining = max(deadline - time.monotonic(), 0.05)
        timeout = min(remaining, self.settings.confirm_timeout_s)
        if self._channel is None:
            return pending, PublishError("not connected to RabbitMQ")
        if self.blocked:
            # Frames sent now would wait behind the alarm and time out anyway.
            return pending, PublishError("RabbitMQ has blocked publishing (resource alarm)")
        channel: Any = self._underlay
        if (
            channel is None
            or channel.is_closed
            or not self._channel.is_initialized
            or not self._declared.issuperset({m.exchange for m in pending})
        ):
            # Slow path (first use, reconnect, a new type): declare and fetch the channel
            # under the deadline. Otherwise nothing here would wait: skip the timer.
            try:
                async with asyncio.timeout(timeout):
                    await self._ensure_exchanges(pending)
                    channel = await self._channel.get_underlay_channel()
            except BROKER_ERRORS as exc:
                return pending, exc
            self._underlay = channel
        if self.fast:
            outcomes = await self._batch.publish(channel, pending, timeout)
        else:
            outcomes = await self._publish_public(pending, timeout)
        for index, outcome in enumerate(outcomes):
            if outcome is not None:
                # Retry from the first failure on: later rows may be republished (duplicates are
                # harmless, ids dedupe) but their last copies arrive in request order.
                return pending[index:], outcome
        return [], None

    async def _check_fast_path(self, channel: aio_pika.abc.AbstractChannel) -> None:
        """Decide once, by behaviour, whether the batched path works with this aiormq."""
        reason = await self_check(channel, self._batch)
        self.fast = reason is None
        if reason is not None:
            log.warning(
                "batched publishing disabled: aiormq does not behave like the versions it was "
                "verified with; publishing row by row through aio-pika instead",
                extra={"reason": reason, "verified_with": VERIFIED_WITH},
            )

    async def _publish_public(self, pending: list[Message], limit: float) -> list[Outcome]:
        """aio-pika's public per-message path: one confirmed publish per row, in order."""
        results = await asyncio.gather(
            *(self._publish_one(m, limit) for m in pending), return_exceptions=True
        )
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError  # we are being cancelled: not a broker failure
        # A CancelledError here is aio-pika cancelling a publish on a closing channel.
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _publish_one(self, message: Message, limit: float) -> None:
        # The deadline covers the wait for a window slot too (slots are held until settled).
        async with asyncio.timeout(limit), self._window:
            exchange = self._exchanges.get(message.exchange)
            if exchange is None:
                assert self._channel is not None
                exchange = await self._channel.get_exchange(message.exchange, ensure=False)
                self._exchanges[message.exchange] = exchange
            await exchange.publish(amqp_message(message), message.routing_key, mandatory=True)
