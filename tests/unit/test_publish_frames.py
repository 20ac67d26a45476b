"""The hand-encoded publish frames are byte for byte what aiormq/pamqp would send."""

from __future__ import annotations

from dataclasses import replace

from pamqp import commands as spec
from pamqp import frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from bridge.amqp_fast import encode_publish
from bridge.events import Message
from tests.support import amqp_properties


def _pamqp(message: Message, channel: int, max_body: int) -> bytes:
    body = message.body
    frames = [
        spec.Basic.Publish(
            exchange=message.exchange, routing_key=message.routing_key, mandatory=True
        ),
        ContentHeader(properties=amqp_properties(message), body_size=len(body)),
    ]
    frames += [ContentBody(body[i : i + max_body]) for i in range(0, len(body), max_body)]
    return b"".join(frame.marshal(f, channel) for f in frames)


def _message(body: bytes) -> Message:
    return Message(
        exchange="opendental.db.appointment",
        routing_key="main-office.0.OD-SERVER",
        message_id="5d1f0b2e-3c4a-4e8e-9c57-0a4f0a3c2b11",
        type="com.opendental.db.Appointment",
        timestamp=1_795_000_000,
        body=body,
    )


def test_single_body_frame() -> None:
    message = _message(b'{"specversion":"1.0","data":{"AptNum":18}}')
    assert encode_publish(message, 1, 131_064) == _pamqp(message, 1, 131_064)


def test_body_split_like_aiormq() -> None:
    message = _message(bytes(range(256)) * 40)
    assert encode_publish(message, 7, 1000) == _pamqp(message, 7, 1000)


def test_unicode_routing_key() -> None:
    message = replace(_message(b"{}"), routing_key="office.0.Réception")
    assert encode_publish(message, 1, 131_064) == _pamqp(message, 1, 131_064)
