"""`od-bridge tail` quiets aiormq only while it runs: an in-process caller keeps its logs."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import BridgeError
from bridge.tail import tail
from tests.support import free_port, make_config


def test_tail_gives_aiormq_its_log_level_back() -> None:
    aiormq_log = logging.getLogger("aiormq")
    before = aiormq_log.level
    aiormq_log.setLevel(logging.WARNING)
    try:
        config = make_config(amqp={"url": f"amqp://guest:guest@127.0.0.1:{free_port()}/"})
        with pytest.raises(BridgeError, match="cannot reach RabbitMQ"):
            tail(config, types=["Appointment"], customers=[], pretty=False)
        assert aiormq_log.level == logging.WARNING
    finally:
        aiormq_log.setLevel(before)
