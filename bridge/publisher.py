"""Publisher protocol; AmqpPublisher (any node of a cluster, confirms, deadlines) and a fake."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
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

from .amqp_fast import VERIFIED_WITH, BatchPublisher, Outcome, is_returned, self_check
from .config import Amqp
from .errors import PublishError
from .events import APP_ID, CONTENT_TYPE, Message
from .link import BROKER_ERRORS, AmqpLink
from .topology import declare_event_exchange

__all__ = [
    "BROKER_ERRORS",
    "AmqpPublisher",
    "InMemoryPublisher",
    "Publisher",
    "declare_event_exchange",
]

log = logging.getLogger("od_bridge.publisher")


class Publisher(Protocol):
    """Takes messages and returns only once every one of them is confirmed, else raises."""

    @property
    def last_failure(self) -> str | None:
        """Why the last publish failed: returned, nacked, timeout or disconnected."""
        ...

    @property
    def ready(self) -> bool:
        """True while messages can be confirmed right now."""
        ...

    @property
    def reachable(self) -> bool:
        """True while worth trying (connected), even if the last publish failed."""
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
        self.last_failure: str | None = None

    @property
    def ready(self) -> bool:
        """True unless told to fail."""
        return not self.fail

    @property
    def reachable(self) -> bool:
        """True unless told to fail."""
        return not self.fail

    async def publish(self, messages: Sequence[Message]) -> bool:
        """Keep the messages, or raise PublishError when `fail` is set."""
        if self.fail:
            self.last_failure = "disconnected"
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


class AmqpPublisher(AmqpLink):
    """Publishes to RabbitMQ with confirms and `mandatory`, on any node of the cluster.

    Every row is confirmed (ack, not returned) or reported unconfirmed; a retry resends only
    the unconfirmed rows. The connection, its reconnects and the topology are AmqpLink's.
    """

    use_fast_path = True  # False: always aio-pika's public per-message path (tests run both)

    def __init__(self, settings: Amqp, *, role: str = "") -> None:
        super().__init__(settings, role=role)
        self._window = asyncio.Semaphore(settings.max_in_flight)
        self._batch = BatchPublisher(self._window)
        # The fast path's self-check verdict: None until decided on a live channel.
        self.fast: bool | None = None if self.use_fast_path else False

    async def _on_channel(self, channel: aio_pika.abc.AbstractChannel) -> None:
        if self.fast is None:
            await self._check_fast_path(channel)

    # --- publishing ------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> bool:
        """Publish in order; retry only the unconfirmed rows within the budget; else PublishError.

        A row confirmed by one attempt is never sent again: a retry carries only the rows
        the broker did not confirm (nack, return, timeout, lost channel).
        """
        rows = list(messages)
        if not rows:
            return True
        deadline = time.monotonic() + self.settings.retry_budget_s
        positions = list(range(len(rows)))
        # The first try runs outside tenacity: building a retry controller per request cost
        # ~10 % of the CPU of a single-event request, and most requests need no retry.
        failed = await self._try(rows, positions, deadline)
        if not failed:
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
                    failed = await self._try(rows, [p for p, _ in failed], deadline)
                    if failed:
                        raise _failure(failed)
        except RetryError as exc:
            error = exc.last_attempt.exception()
            assert isinstance(error, PublishError)
            raise error from error.__cause__
        return True

    async def _try(
        self, rows: list[Message], positions: list[int], deadline: float
    ) -> list[tuple[int, BaseException]]:
        """One attempt at the rows at `positions`; those not confirmed, with why."""
        pending = [rows[p] for p in positions]
        outcomes = await self._attempt(pending, deadline)
        failed = [(p, o) for p, o in zip(positions, outcomes, strict=True) if o is not None]
        if not failed:
            self.confirming = True
            return failed
        cause = _cause([o for _, o in failed])
        self.last_failure = cause
        if cause in ("nacked", "timeout"):
            # RabbitMQ 3.10 may keep nacking this channel (a dead quorum-queue leader): use a
            # fresh one. Not after a return: that is routing, the channel is fine.
            self.confirming = False
            await self._renew_channel()
        elif cause == "disconnected":
            self.confirming = False
        return failed

    async def _attempt(self, pending: list[Message], deadline: float) -> list[Outcome]:
        """Publish every pending row once; each row's outcome (None when confirmed)."""
        remaining = max(deadline - time.monotonic(), 0.05)
        timeout = min(remaining, self.settings.confirm_timeout_s)
        if self._connection is None:
            return [PublishError("not connected to RabbitMQ")] * len(pending)
        if self.blocked:
            # Frames sent now would wait behind the alarm and time out anyway.
            error = PublishError("RabbitMQ has blocked publishing (resource alarm)")
            return [error] * len(pending)
        channel: Any = self._underlay
        if (
            channel is None
            or channel.is_closed
            or self._channel is None
            or not self._declared.issuperset({m.exchange for m in pending})
        ):
            # Slow path (first use, new channel, a new type): declare and fetch the channel
            # under the deadline. Otherwise nothing here would wait: skip the timer.
            try:
                async with asyncio.timeout(timeout):
                    if self._channel is None or self._channel.is_closed:
                        await self._renew_channel()
                    public = self._channel
                    if public is None:  # blocked, or the connection went while renewing
                        raise PublishError("not connected to RabbitMQ")
                    await self._ensure_exchanges(public, pending)
                    channel = await public.get_underlay_channel()
            except (*BROKER_ERRORS, PublishError) as exc:
                return [exc] * len(pending)
            self._underlay = channel
        if self.fast:
            return await self._batch.publish(channel, pending, timeout)
        return await self._publish_public(pending, timeout)

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
        """aio-pika's public per-message path: one confirmed publish per row, in order.

        One deadline for the attempt, not one per row. Rows take window slots and the
        channel's lock in order, and a row cancelled before it was written is never sent.
        Per-row timers start one after the other (up to ~70 ms apart over a 1000-row drain
        batch), so an earlier row's timer could expire while it waited for the lock and a later
        row, with time left, took the lock and was sent: its first copy arrived before the
        earlier row's (18-32 rows per memory-alarm test run, all in spool drains).
        """
        tasks = [asyncio.create_task(self._publish_one(m)) for m in pending]
        try:
            await asyncio.wait(tasks, timeout=limit)
        finally:
            # Every unsettled row is cancelled in one go, before any runs again: none can take
            # a slot or the lock that an earlier one gives up, so the rows written are always
            # a prefix of the attempt (cancelled too when we are: no row outlives its request).
            # One timer, not equal per-row deadlines: nothing rests on the loop firing timers
            # due at the same instant in one turn (uvloop's are rounded to milliseconds).
            late = {t for t in tasks if not t.done()}
            for t in late:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        # A row cancelled by the deadline timed out; any other CancelledError is aio-pika
        # cancelling a publish on a closing channel.
        return [
            TimeoutError("not confirmed in time")
            if t in late and isinstance(r, asyncio.CancelledError)
            else (r if isinstance(r, BaseException) else None)
            for t, r in zip(tasks, results, strict=True)
        ]

    async def _publish_one(self, message: Message) -> None:
        # The attempt's deadline covers the wait for a slot too (slots are held until settled).
        async with self._window:
            exchange = self._exchanges.get(message.exchange)
            if exchange is None:
                if self._channel is None:
                    raise PublishError("channel being replaced")
                exchange = await self._channel.get_exchange(message.exchange, ensure=False)
                self._exchanges[message.exchange] = exchange
            await exchange.publish(amqp_message(message), message.routing_key, mandatory=True)


def _refused(outcome: BaseException) -> bool:
    """The row cannot be routed (basic.return, or its exchange clashes): not a broker failure."""
    return is_returned(outcome) or isinstance(
        outcome, aio_pika.exceptions.ChannelPreconditionFailed
    )


def _cause(outcomes: list[BaseException]) -> str:
    """Why rows were not confirmed: timeout, nacked, disconnected, or (only) returned."""
    if any(isinstance(o, TimeoutError) for o in outcomes):
        return "timeout"
    if any(
        isinstance(o, aio_pika.exceptions.DeliveryError) and not is_returned(o) for o in outcomes
    ):
        return "nacked"
    if all(_refused(o) for o in outcomes):
        return "returned"
    return "disconnected"


def _failure(failed: list[tuple[int, BaseException]]) -> PublishError:
    """The PublishError of an attempt: which rows are unconfirmed, which returned, and why."""
    outcomes = [o for _, o in failed]
    cause = _cause(outcomes)
    first = outcomes[0]
    error = PublishError(
        f"not confirmed ({cause}): {type(first).__name__}",
        unconfirmed=tuple(p for p, _ in failed),
        returned=frozenset(p for p, o in failed if _refused(o)),
        cause=cause,
    )
    error.__cause__ = first
    return error
