"""/readyz: `broker: connected` only while confirming; listen.ready_when says what ready means."""

from __future__ import annotations

import pytest

from bridge.metrics import Metrics
from bridge.outbox import Outbox
from bridge.publisher import InMemoryPublisher
from bridge.spool import Spool


@pytest.mark.parametrize(("ready_when", "ready"), [("durable", True), ("broker", False)])
async def test_a_replica_without_broker_is_ready_only_in_durable_mode(
    spool: Spool, ready_when: str, ready: bool
) -> None:
    publisher = InMemoryPublisher()
    outbox = Outbox(publisher, spool, Metrics(), ready_when=ready_when)
    assert outbox.state()["ready"] is True
    publisher.fail = True  # the broker cannot confirm: rows would go to the spool
    state = outbox.state()
    assert state["broker"] == "disconnected"
    assert state["ready"] is ready
    if not ready:
        assert "ready_when: broker" in state["reason"]
