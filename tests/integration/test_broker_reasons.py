"""A wrong AMQP URL says why, in the log and in /readyz, never with the password (issue 13)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from bridge.config import Amqp
from bridge.errors import PublishError
from bridge.metrics import Metrics
from bridge.outbox import Outbox
from bridge.publisher import AmqpPublisher
from tests.support import AMQP_URL, free_port

PASSWORD = "Wr0ngPassw0rd-9"


def urls() -> dict[str, tuple[str, str]]:
    """Wrong URL → the words its reason must contain."""
    parts = urlsplit(AMQP_URL)
    host = f"{parts.hostname}:{parts.port or 5672}"
    port = free_port()
    return {
        "closed port": (
            f"amqp://guest:{PASSWORD}@127.0.0.1:{port}/",
            f"Connect call failed ('127.0.0.1', {port})",
        ),
        "bad password": (f"amqp://guest:{PASSWORD}@{host}/", "ACCESS_REFUSED"),
        "no such vhost": (
            f"amqp://{parts.username}:{parts.password}@{host}/no-such-vhost-{port}",
            f"vhost 'no-such-vhost-{port}' not found",
        ),
    }


@pytest.mark.parametrize("case", ["closed port", "bad password", "no such vhost"])
async def test_a_wrong_amqp_url_logs_and_reports_the_reason(
    need_broker: None, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the log said only `AMQPConnectionError` and /readyz said nothing of why.
    url, words = urls()[case]
    caplog.set_level(logging.INFO)
    publisher = AmqpPublisher(Amqp(url=url))  # type: ignore[arg-type]
    with pytest.raises(PublishError, match="cannot reach RabbitMQ at amqp://") as raised:
        await publisher.start(wait=True)
    assert words in str(raised.value)
    lines = [r for r in caplog.records if r.getMessage() == "broker unreachable at start; retrying"]
    assert len(lines) == 1
    assert words in lines[0].reason  # type: ignore[attr-defined]
    assert "@" in lines[0].url and PASSWORD not in lines[0].url  # type: ignore[attr-defined]
    state = Outbox(publisher, None, Metrics()).state()
    assert state["ready"] is False
    assert words in state["broker_error"]
    assert PASSWORD not in caplog.text + str(raised.value) + str(state)
    await publisher.close()


async def test_connecting_is_logged_once_with_the_url_but_no_password(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    publisher = AmqpPublisher(Amqp(url=AMQP_URL, exchange_prefix=prefix))  # type: ignore[arg-type]
    await publisher.start(wait=True)
    try:
        lines = [r for r in caplog.records if r.getMessage() == "connected to broker"]
        assert len(lines) == 1
        password = urlsplit(AMQP_URL).password or "guest"
        assert f":{password}@" not in caplog.text
        assert "broker_error" not in Outbox(publisher, None, Metrics()).state()
    finally:
        await publisher.close()


async def test_each_node_tried_gets_its_own_line(
    need_broker: None, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = urls()
    closed, refused = wrong["closed port"][0], wrong["bad password"][0]
    caplog.set_level(logging.INFO)
    publisher = AmqpPublisher(Amqp(url=(closed, refused)))  # type: ignore[arg-type]
    with pytest.raises(PublishError):
        await publisher.start(wait=True)
    lines = [r for r in caplog.records if r.getMessage() == "broker unreachable at start; retrying"]
    reasons = {r.url: r.reason for r in lines}  # type: ignore[attr-defined]
    assert len(lines) == 2
    assert "Connect call failed" in reasons[closed.replace(f":{PASSWORD}", "")]
    assert "ACCESS_REFUSED" in reasons[refused.replace(f":{PASSWORD}", "")]
    assert PASSWORD not in caplog.text
    await publisher.close()
