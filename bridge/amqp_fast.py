"""AMQP frames of a persistent, mandatory publish, and the writer that coalesces them.

The hot path of publishing at the aiormq level: rows are encoded here rather than through
pamqp's generic marshaller (tests compare the bytes with pamqp's), and the rows of requests
arriving in one loop turn are written in one frame write, with aiormq's own confirmation
bookkeeping (delivery tags, returns matched by message_id, futures failed on channel close).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiormq.abc import ChannelFrame

from .errors import PublishError
from .events import APP_ID, CONTENT_TYPE, Message

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


def supports_batch(channel: Any) -> bool:
    """True when this aiormq channel has the internals batched publishing relies on (7.2.x)."""
    needed = (
        "lock",
        "delivery_tag",
        "confirmations",
        "message_id_delivery_tag",
        "write_queue",
        "create_future",
        "number",
        "max_content_size",
    )
    return all(hasattr(channel, name) for name in needed) and bool(
        getattr(channel, "publisher_confirms", False)
    )


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
