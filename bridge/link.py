"""One connection to any node of a RabbitMQ cluster: reconnects, topology, channel renewal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from . import topology
from .amqp_fast import connection_blocked
from .broker import Unreachable, close_quietly, connect_any, connection_name, shuffled, where
from .broker_errors import reason, safe_url
from .config import Amqp
from .errors import PublishError
from .events import Message
from .topology import declare_event_exchange

log = logging.getLogger("od_bridge.publisher")

# What a broker that went away (or never came) raises, from a connect to a confirm: all mean
# "not now, try again", and every part that talks to RabbitMQ catches this one tuple. It is
# aio-pika's own list, the one its robust connection reconnects on: AMQP errors, OSError
# (so ConnectionError and TimeoutError), RuntimeError (aiormq's channel or connection in an
# invalid state), StopAsyncIteration (the peer closed during the handshake), pamqp's errors.
BROKER_ERRORS = aio_pika.exceptions.CONNECTION_EXCEPTIONS


class AmqpLink:
    """The connection under AmqpPublisher: one at a time, to any node of the cluster.

    Owned here rather than by aio-pika's robust connection (which knows one URL): when it is
    lost, a supervisor reconnects to any reachable node (URLs in shuffled order, tenacity's
    jittered backoff, capped) and declares the topology again. `_renew_channel` replaces the
    publishing channel (after a nack or a confirm timeout: RabbitMQ 3.10 can keep nacking a
    channel whose quorum-queue leader died, while fresh channels are acked).
    """

    def __init__(self, settings: Amqp, *, role: str = "") -> None:
        self.settings = settings
        self.prefix = settings.exchange_prefix
        self.name = connection_name(settings.connection_name, role)
        self._urls = shuffled(settings.urls)
        self._node = -1  # index in _urls of the current (or last) node
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._underlay: Any = None  # the aiormq channel under self._channel, once fetched
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}  # public path's handles
        self._declared: set[str] = set()  # exchanges declared on this connection
        self._used: set[str] = set(topology.base_exchanges(self.prefix))  # re-declared on connect
        self._clashes: set[str] = set()  # exchanges RabbitMQ refused to declare (logged once)
        self._declare_lock = asyncio.Lock()
        self._renew_lock = asyncio.Lock()
        self.connected = asyncio.Event()  # set while connected
        self.lost = asyncio.Event()  # set while the connection is down (after a first connect)
        self._gone = asyncio.Event()  # the supervisor's cue to reconnect
        self.on_ready: list[Callable[[], object]] = []  # called on every (re)connect
        self.confirming = False  # the last publish was confirmed (or none failed since connect)
        self.last_failure: str | None = None  # returned | nacked | timeout | disconnected
        self._supervisor: asyncio.Task[None] | None = None
        self._unrouted: asyncio.Task[None] | None = None
        self._closing_old: set[asyncio.Task[None]] = set()  # closes and tasks of what we left
        self._closing = False  # our own close: the connection loss is no news
        self._probe: aio_pika.abc.AbstractChannel | None = None  # for metrics RPCs only
        self.problem: str | None = None  # why the last connect failed (for /readyz), else None

    async def _on_channel(self, channel: aio_pika.abc.AbstractChannel) -> None:
        """Called with each new connection's first channel, before it is used (a hook)."""

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, *, wait: bool = True) -> None:
        """Connect and declare the topology; if no node answers, retry in the background.

        Raises UnroutedTypeMismatch (a configuration problem) whatever `wait` says.
        """
        try:
            await self._connect(strict=True)
        except topology.UnroutedTypeMismatch:
            await self.close()
            raise
        except Exception as exc:  # any failure to connect means "try again later"
            url, why = self._failed(exc, "broker unreachable at start; retrying")
            if wait:
                await self.close()
                raise PublishError(f"cannot reach RabbitMQ at {url}: {why}") from exc
            self._gone.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="amqp-connection")

    async def _supervise(self) -> None:
        """Forever: wait for the connection to go, then reconnect to any node."""
        while True:
            await self._gone.wait()
            retrying = AsyncRetrying(
                wait=wait_random_exponential(multiplier=0.1, max=5.0),
                retry=retry_if_exception_type(Exception),
            )
            async for attempt in retrying:
                with attempt:
                    try:
                        await self._connect(strict=False)
                    except Exception as exc:
                        self._failed(exc, "broker still unreachable")
                        raise

    def _failed(self, exc: BaseException, message: str) -> tuple[str, str]:
        """Log a failed connect with where and why (again only when the reason changes)."""
        if isinstance(exc, Unreachable):
            url, why = exc.url, exc.reason
        else:  # the node answered, then the channel or the topology failed
            node = self._urls[max(self._node, 0)]
            url, why = safe_url(node), reason(exc, node)
        if why != self.problem:
            # One line per node tried, each with its own reason (which node says what).
            for node, node_why in getattr(exc, "tried", ()) or ((url, why),):
                log.warning(message, extra={"url": node, "reason": node_why})
        self.problem = why
        return url, why

    async def _connect(self, *, strict: bool) -> None:
        connection, index = await connect_any(
            self._urls,
            name=self.name,
            heartbeat=self.settings.heartbeat_s,
            first=self._node + 1,  # after a loss, the next node first
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await topology.declare_unrouted_exchange(channel, self.prefix)
            self._declared = set()
            for name in sorted(self._used):
                await self._declare_exchange(channel, name)
            await self._on_channel(channel)
            # At start a clash of the queue's type is an error to show; later it is logged.
            declared = strict and await self._declare_unrouted(connection, limit_s=5.0)
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
            await close_quietly(connection.close())
            raise
        self._gone.clear()
        connection.close_callbacks.add(self._on_close)
        self._connection, self._channel, self._node = connection, channel, index
        self._underlay = None
        self._exchanges.clear()
        if not declared:
            self._background_unrouted(connection)
        self.confirming = True
        self.problem = None
        self.lost.clear()
        self.connected.set()
        log.info("connected to broker", extra={"url": safe_url(self._urls[index])})
        for callback in self.on_ready:
            callback()

    async def _declare_unrouted(
        self, connection: aio_pika.abc.AbstractConnection, limit_s: float
    ) -> bool:
        """Declare `{prefix}.unrouted` on a channel of its own; False while it is unavailable."""
        try:
            async with asyncio.timeout(limit_s):
                channel = await connection.channel()
                try:
                    await topology.declare_unrouted_queue(channel, self.settings)
                finally:
                    await close_quietly(channel.close())
        except (topology.UnroutedTypeMismatch, aio_pika.exceptions.ChannelPreconditionFailed):
            raise
        except Exception as exc:  # home node down, no quorum yet: publishing goes on
            log.warning(
                "the unrouted queue is unavailable; declaring it again in the background",
                extra={"queue": f"{self.prefix}.unrouted", "error": type(exc).__name__},
            )
            return False
        return True

    def _background_unrouted(self, connection: aio_pika.abc.AbstractConnection) -> None:
        old = self._unrouted
        if old is not None and not old.done():
            old.cancel()  # the task for a connection we left: close() still awaits its end
            self._hold(old)
        self._unrouted = asyncio.create_task(
            self._keep_declaring_unrouted(connection), name="amqp-unrouted"
        )

    async def _keep_declaring_unrouted(self, connection: aio_pika.abc.AbstractConnection) -> None:
        """Declare the unrouted queue until it works (or this connection goes)."""
        delay = 0.5
        while connection is self._connection:
            try:
                if await self._declare_unrouted(connection, limit_s=10.0):
                    return
            except (
                topology.UnroutedTypeMismatch,
                aio_pika.exceptions.ChannelPreconditionFailed,
            ) as exc:
                log.error("the unrouted queue cannot be declared", extra={"error": str(exc)})
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _on_close(self, sender: object, *_: object) -> None:
        if sender is not self._connection:
            return  # an old connection we already left
        self._lose("connection to broker lost")

    def _lose(self, why: str) -> None:
        """The connection is gone (or unusable): publishing stops, the supervisor reconnects."""
        connection, self._connection = self._connection, None
        self._channel, self._underlay = None, None
        self.connected.clear()
        self.lost.set()
        self.confirming = False
        self.last_failure = "disconnected"
        if connection is not None:
            self._close_later(connection)
            if not self._closing:
                log.warning(why, extra={"node": where(self._urls[self._node])})
        if not self._closing:
            self._gone.set()

    def _close_later(
        self, what: aio_pika.abc.AbstractConnection | aio_pika.abc.AbstractChannel
    ) -> None:
        # Closed in the background (a dead peer may take the close timeout), but owned: the
        # task is referenced until done (asyncio keeps tasks only weakly) and close() awaits
        # what is still running.
        self._hold(asyncio.get_running_loop().create_task(close_quietly(what.close())))

    def _hold(self, task: asyncio.Task[None]) -> None:
        """Reference `task` until it is done; close() awaits what is still running."""
        self._closing_old.add(task)
        task.add_done_callback(self._closing_old.discard)

    async def close(self) -> None:
        """Close the connection (waiting publishes fail)."""
        self._closing = True
        for task in (self._supervisor, self._unrouted):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await close_quietly(connection.close())
        await asyncio.gather(*self._closing_old, return_exceptions=True)
        self.connected.clear()

    @property
    def reachable(self) -> bool:
        """True while connected and not blocked: worth publishing (it may still fail)."""
        return self._connection is not None and self.connected.is_set() and not self.blocked

    @property
    def ready(self) -> bool:
        """True while a publish can be confirmed now: reachable, and the last one confirmed."""
        return self.confirming and self.reachable

    @property
    def node(self) -> str | None:
        """host:port of the node we are connected to, if any."""
        return where(self._urls[self._node]) if self._connection is not None else None

    @property
    def blocked(self) -> bool:
        """True while RabbitMQ blocks publishing (memory or disk alarm: connection.blocked)."""
        return connection_blocked(self._connection)

    async def unrouted_depth(self, timeout_s: float = 1.0) -> int | None:
        """Messages waiting in `{prefix}.unrouted`, or None when the broker cannot say now."""
        connection = self._connection
        if connection is None or not self.ready:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                # A channel of its own: a failed RPC closes its channel, never the publishing one.
                if self._probe is None or self._probe.is_closed:
                    self._probe = await connection.channel()
                queue = await self._probe.declare_queue(f"{self.prefix}.unrouted", passive=True)
        except Exception as exc:  # a metric must never fail the scrape
            log.debug("unrouted depth unavailable", extra={"error": type(exc).__name__})
            self._probe = None
            return None
        count: int | None = queue.declaration_result.message_count
        return count

    # --- topology --------------------------------------------------------------------------
    async def _declare_exchange(self, channel: aio_pika.abc.AbstractChannel, name: str) -> None:
        await declare_event_exchange(channel, self.prefix, name)
        self._declared.add(name)
        self._used.add(name)

    async def _ensure_exchanges(
        self, channel: aio_pika.abc.AbstractChannel, messages: Sequence[Message]
    ) -> None:
        missing = {m.exchange for m in messages} - self._declared
        if not missing:
            return
        async with self._declare_lock:
            for name in sorted(missing - self._declared):
                try:
                    await self._declare_exchange(channel, name)
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

    async def _renew_channel(self) -> None:
        """Replace the publishing channel; if that fails, the connection is gone too."""
        old, connection = self._channel, self._connection
        async with self._renew_lock:
            if self._channel is not old or connection is None:
                return  # renewed meanwhile by a concurrent request
            self._channel, self._underlay = None, None
            self._exchanges.clear()
            if old is not None and not old.is_closed:
                # Closing fails the old channel's pending confirmations: their slots come back.
                self._close_later(old)
            try:
                async with asyncio.timeout(self.settings.confirm_timeout_s):
                    channel = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
            except BROKER_ERRORS:
                if connection_blocked(connection):
                    # A resource alarm, not a dead connection: RabbitMQ reads nothing from it
                    # until the alarm clears, then stores the rows still in it. Leaving it would
                    # not unblock us (a new connection is blocked at its first publish) but let
                    # those stale rows land after newer ones sent on the next connection.
                    # A channel is opened again once it is unblocked.
                    return
                # aio-pika's is_closed stays False after a server close or reset: a channel
                # that cannot be opened is the sign. Reconnect, to any node.
                if connection is self._connection:
                    self._lose("connection to broker unusable")
                return
            if connection is self._connection:
                self._channel = channel
