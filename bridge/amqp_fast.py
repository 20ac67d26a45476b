"""The sealed fast path: batched publishing through aiormq's private state, self-checked.

Everything in od-bridge that touches aiormq or pamqp internals lives here and nowhere else:
the hand-encoded publish frames, the writer that coalesces the rows of concurrent requests
into one frame write on aiormq's write queue, the delivery tags and confirmation futures
registered in aiormq's own bookkeeping (so its returns, nacks and channel-close handling
apply unchanged), and the name-mangled "connection blocked" flag.

Verified against aiormq 7.2.4 and pamqp 4.0.1 (aio-pika 10.2.1); pyproject.toml admits only
those minor versions. Support is decided by behaviour, not attribute names: `self_check`
publishes an acked and a returned probe through this path on the first channel and compares
what arrives; when anything differs the publisher logs one warning and uses aio-pika's
public per-message path instead (tests run both).
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import aio_pika
import aiormq
from aiormq.abc import ChannelFrame

from .errors import PublishError
from .events import APP_ID, CONTENT_TYPE, Message

VERIFIED_WITH = "aiormq 7.2.4, pamqp 4.0.1"

# --- wire encoding of one publish (AMQP 0-9-1 Basic.Publish + content header + body) ---------
# Encoded here rather than through pamqp's generic marshaller: this is the hot path (three
# frames per row). tests compare these bytes with pamqp's for the same message.
_FRAME_END = b"\xce"
_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_PUBLISH_ID = struct.pack(">HHH", 60, 40, 0)  # Basic.Publish, reserved-1
_HEADER_ID = struct.pack(">HH", 60, 0)  # Basic class, weight
# Property flags: content_type, delivery_mode, message_id, timestamp, type, app_id.
_FLAGS = 0x8000 | 0x1000 | 0x0080 | 0x0040 | 0x0020 | 0x0008
_CONTENT_TYPE = bytes([len(CONTENT_TYPE)]) + CONTENT_TYPE.encode()
_APP_ID = bytes([len(APP_ID)]) + APP_ID.encode()
_SIZE_FLAGS = struct.Struct(">QH")
_TIMESTAMP = struct.Struct(">Q")


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("AMQP short string longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(kind, channel, len(payload)) + payload + _FRAME_END


def encode_publish(message: Message, channel: int, max_body: int) -> bytes:
    """The frames of one persistent, mandatory publish (what basic_publish + properties() send)."""
    method = _PUBLISH_ID + _shortstr(message.exchange) + _shortstr(message.routing_key) + b"\x01"
    body = message.body
    header = b"".join(
        (
            _HEADER_ID,
            _SIZE_FLAGS.pack(len(body), _FLAGS),
            _CONTENT_TYPE,
            b"\x02",  # delivery_mode 2: persistent
            _shortstr(message.message_id),
            _TIMESTAMP.pack(message.timestamp),
            _shortstr(message.type),
            _APP_ID,
        )
    )
    parts = [_frame(1, channel, method), _frame(2, channel, header)]
    for start in range(0, len(body), max_body):
        parts.append(_frame(3, channel, body[start : start + max_body]))
    return b"".join(parts)


def encode_chunk(channel: Any, chunk: list[Message]) -> tuple[list[bytes], BaseException | None]:
    """The frames of each row, stopping at the first row that cannot be encoded."""
    number = channel.number
    max_body = channel.max_content_size
    frames: list[bytes] = []
    for message in chunk:
        try:
            frames.append(encode_publish(message, number, max_body))
        except ValueError as exc:  # e.g. a routing key over 255 bytes: this row cannot go
            return frames, exc
    return frames, None


@dataclass(slots=True)
class Entry:
    """One request's rows waiting to be written with those of requests that came meanwhile."""

    messages: list[Message]
    frames: list[bytes]
    futures: list[asyncio.Future[Any]]  # the request's lists, filled once written
    tags: list[int]
    written: asyncio.Future[None]


class Coalescer:
    """Coalesces the rows of concurrent requests into one frame write per loop turn.

    The first request to find the outbox empty leads: it yields once so the requests of the
    same loop turn can join, then writes everything under the channel lock in arrival order
    and registers each row's confirmation (delivery tags in write order). A row gets a
    confirmation future only if its frames were written; so a request whose rows were not
    written (cancelled, channel closed) sees no futures and frees its window slots itself.
    """

    def __init__(self, settled: Callable[[asyncio.Future[Any]], None]) -> None:
        self._settled = settled
        self._waiting: dict[Any, list[Entry]] = {}  # per aiormq channel (changes on reconnect)
        self.writes = 0  # frame writes so far (each carries the rows of one or more requests)

    async def write(self, channel: Any, entry: Entry) -> None:
        """Write `entry` (alone or with others); raise if it was not written."""
        batch = self._waiting.get(channel)
        if batch is not None:
            batch.append(entry)
            try:
                await entry.written
            except asyncio.CancelledError:
                if entry in batch and self._waiting.get(channel) is batch:
                    batch.remove(entry)
                raise
            return
        batch = self._waiting[channel] = [entry]
        try:
            await asyncio.sleep(0)  # let the requests of this loop turn join
            async with channel.lock:
                if self._waiting.get(channel) is batch:
                    del self._waiting[channel]
                live = [e for e in batch if not e.written.done()]
                payload = b"".join([frame for e in live for frame in e.frames])
                for e in live:
                    e.frames = []  # the joined payload is all that is needed now
                await channel.write_queue.put(ChannelFrame(payload=payload, should_close=False))
                self.writes += 1
                self._register(channel, live)
        finally:
            if self._waiting.get(channel) is batch:
                del self._waiting[channel]
            for other in batch:
                if not other.written.done():
                    other.written.set_exception(PublishError("rows not written"))
                    other.written.exception()  # retrieved even if its request is gone
        entry.written.result()

    def _register(self, channel: Any, entries: list[Entry]) -> None:
        """Delivery tags and confirmation futures for rows just put in the write queue."""
        tag = channel.delivery_tag
        confirmations = channel.confirmations
        by_id = channel.message_id_delivery_tag
        settled = self._settled
        for entry in entries:
            # A request cancelled while the frames were queued has already freed its slots.
            owned = not entry.written.done()
            for message in entry.messages:
                tag += 1
                future: asyncio.Future[Any] = channel.create_future()
                confirmations[tag] = future
                by_id[message.message_id] = tag
                if owned:
                    future.add_done_callback(settled)  # frees the row's window slot
                    entry.futures.append(future)
                    entry.tags.append(tag)
                else:
                    future.add_done_callback(partial(forget, by_id, message.message_id, tag))
            if owned:
                entry.written.set_result(None)
        channel.delivery_tag = tag


def forget(by_id: dict[str, int], message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if by_id.get(message_id) == tag:
        del by_id[message_id]


def connection_blocked(connection: Any) -> bool:
    """True while RabbitMQ blocks publishing on this aio-pika connection (resource alarm)."""
    # aiormq tracks connection.blocked/unblocked in a private event and exposes no property;
    # read defensively so an aiormq without it just reports "not blocked".
    transport = getattr(connection, "transport", None)
    amqp = getattr(transport, "connection", None)
    unblocked = getattr(amqp, "_Connection__connection_unblocked", None)
    return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()


Outcome = BaseException | None  # per row: None when confirmed, else why not


class BatchPublisher:
    """Publishes rows as coalesced frame writes, with aiormq's confirmation bookkeeping.

    The same frames as one basic_publish per row, without a task, a lock round and a drain
    wait per row. Rows take window slots (shared with the public path) in arrival order;
    each written row's slot is freed when the broker settles it.
    """

    def __init__(self, window: asyncio.Semaphore) -> None:
        self._window = window
        self._admission = asyncio.Lock()  # requests take window slots in turn
        self.coalescer = Coalescer(self._settled)

    async def publish(self, channel: Any, pending: list[Message], limit: float) -> list[Outcome]:
        """Write every row, then wait (up to `limit` s in all) for each row's confirmation."""
        futures: list[asyncio.Future[Any]] = []
        tags: list[int] = []
        slots = 0
        failed: BaseException | None = None
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        try:
            # One timer covering the wait for window slots too: slots are held until the
            # broker settles each row, so a stalled or blocked broker must become a failure
            # within the budget, not a wait without end.
            async with asyncio.timeout_at(loop.time() + limit):
                # A request needing more slots than are free writes what it has and waits for
                # the rest still in turn, so a 1000-row request is not overtaken slot by slot.
                # Its last chunk is written after the turn is passed on: requests of one loop
                # turn then share a write.
                index = 0
                async with self._admission:
                    while True:
                        taken = await self._take_slots(len(pending) - index)
                        slots += taken
                        if index + taken == len(pending):
                            break
                        failed = await self._write(
                            channel, pending[index : index + taken], futures, tags
                        )
                        index += taken
                        if failed is not None:
                            break
                if failed is None:
                    failed = await self._write(channel, pending[index:], futures, tags)
                for future in futures:  # every row settles: ack, nack, return or close
                    try:
                        await future
                    except asyncio.CancelledError:
                        if task is not None and task.cancelling():
                            raise  # we are cancelled, not the confirmation
                    except Exception:  # noqa: S112 - recorded per row below
                        continue
        except TimeoutError:
            pass  # rows still unsettled count as timed out below
        finally:
            for _ in range(slots - len(futures)):
                self._window.release()  # slots of rows that were not written
            _finish(channel, pending, futures, tags)
        outcomes: list[Outcome] = []
        for future in futures:
            if not future.done():
                outcomes.append(TimeoutError("not confirmed in time"))
            elif future.cancelled():
                outcomes.append(PublishError("confirmation cancelled (channel closed)"))
            else:
                outcomes.append(future.exception())
        unwritten = failed or TimeoutError("not written in time")
        outcomes += [unwritten] * (len(pending) - len(futures))
        return outcomes

    async def _take_slots(self, wanted: int) -> int:
        """One window slot (waiting for it if none is free), then every free one up to wanted."""
        window = self._window
        await window.acquire()
        taken = 1
        while taken < wanted and not window.locked():
            await window.acquire()  # does not suspend: the semaphore is free
            taken += 1
        return taken

    async def _write(
        self,
        channel: Any,
        chunk: list[Message],
        futures: list[asyncio.Future[Any]],
        tags: list[int],
    ) -> BaseException | None:
        """Encode and write `chunk`, adding a future per written row; the error, if any."""
        frames, error = encode_chunk(channel, chunk)
        if not frames:
            return error
        written = asyncio.get_running_loop().create_future()
        entry = Entry(chunk[: len(frames)], frames, futures, tags, written)
        try:
            await self.coalescer.write(channel, entry)
        except Exception as exc:  # not written: the rows' slots stay with the caller
            return exc
        return error

    def _settled(self, future: asyncio.Future[Any]) -> None:
        """A row's confirmation settled (ack, nack, return, close): free its window slot."""
        self._window.release()
        if not future.cancelled():
            future.exception()  # retrieved: a failure nobody awaits logs no warning


def _finish(
    channel: Any,
    pending: list[Message],
    futures: list[asyncio.Future[Any]],
    tags: list[int],
) -> None:
    """Drop aiormq's message_id → tag entry of each row, now or once it settles."""
    by_id = channel.message_id_delivery_tag
    for message, future, tag in zip(pending, futures, tags, strict=False):
        if future.done():
            forget(by_id, message.message_id, tag, future)
        else:
            future.add_done_callback(partial(forget, by_id, message.message_id, tag))


def is_returned(outcome: Outcome) -> bool:
    """True when the broker returned the row (basic.return: no route), not failed it."""
    return isinstance(outcome, aiormq.exceptions.PublishError)


# What a connection or channel lost during the self-check raises: decide on the next channel.
# Narrower than publisher.BROKER_ERRORS on purpose: a channel the broker closed over our own
# frames (an AMQP channel error) means the internals differ, and must count as unsupported.
_LOST = (
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
    ConnectionError,
    TimeoutError,
)


async def self_check(channel: aio_pika.abc.AbstractChannel, batch: BatchPublisher) -> str | None:
    """Probe the fast path on a live confirm channel; None when it works, else why not.

    Publishes one row that routes (to a temporary queue) and one that does not (mandatory,
    no such queue) and expects an ack and a return, the routed row back with the same bytes
    and properties, and no bookkeeping left behind. Raises the connection's error when the
    channel is lost meanwhile (nothing decided: check again on the next channel).
    """
    try:
        async with asyncio.timeout(10):
            return await _probe(channel, batch)
    except _LOST:
        raise
    except Exception as exc:  # any other surprise means the internals are not what we know
        return f"{type(exc).__name__} during the self-check"


async def _probe(channel: aio_pika.abc.AbstractChannel, batch: BatchPublisher) -> str | None:
    underlay: Any = await channel.get_underlay_channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    try:
        routed = Message(
            exchange="",
            routing_key=queue.name,
            message_id=f"od-bridge-self-check-{uuid.uuid4().hex}",
            type="od-bridge.self-check",
            timestamp=int(time.time()),
            body=b'{"self-check": "' + b"x" * 300 + b'"}',
        )
        lost = replace(routed, routing_key=f"{queue.name}.nobody", message_id=uuid.uuid4().hex)
        outcomes = await batch.publish(underlay, [routed, lost], 5.0)
        if outcomes[0] is not None or not is_returned(outcomes[1]):
            return f"unexpected confirmations {[type(o).__name__ for o in outcomes]}"
        got = await queue.get(no_ack=True, timeout=5, fail=False)
        if got is None:
            return "the acked probe did not arrive"
        expected = (routed.body, routed.message_id, routed.type, 2, CONTENT_TYPE, APP_ID)
        actual = (
            got.body,
            got.message_id,
            got.type,
            got.delivery_mode,
            got.content_type,
            got.app_id,
        )
        if actual != expected or got.timestamp is None:
            return "the probe arrived altered"
        if {routed.message_id, lost.message_id} & set(underlay.message_id_delivery_tag):
            return "aiormq kept the probes' bookkeeping"
        return None
    finally:
        await queue.delete(if_unused=False, if_empty=False)
