"""A failed batch is retried without the rows the broker already confirmed (no duplicate storms)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from bridge.errors import PublishError
from bridge.events import Message
from bridge.metrics import Metrics
from bridge.outbox import Drainer, Outbox
from bridge.spool import Spool


def msg(n: int) -> Message:
    return Message("ex", "k", f"id-{n}", "com.opendental.db.Appointment", 1, b"%d" % n)


class FlakyBroker:
    """Confirms every row except those whose id it is told to fail once (nack-like)."""

    def __init__(self, fail_once: set[str], cause: str = "timeout") -> None:
        self.fail_once = fail_once
        self.cause = cause
        self.sent: list[str] = []  # every copy the broker was handed
        self.confirmed: list[str] = []
        self.ready = True
        self.reachable = True
        self.last_failure: str | None = None

    async def publish(self, messages: Sequence[Message]) -> bool:
        self.sent += [m.message_id for m in messages]
        failed = tuple(i for i, m in enumerate(messages) if m.message_id in self.fail_once)
        self.fail_once -= {messages[i].message_id for i in failed}
        self.confirmed += [m.message_id for i, m in enumerate(messages) if i not in failed]
        if failed:
            self.last_failure = self.cause
            raise PublishError("not confirmed", unconfirmed=failed, cause=self.cause)
        return True


async def test_the_outbox_spools_only_the_unconfirmed_rows(spool: Spool) -> None:
    broker = FlakyBroker({"id-3", "id-7"})
    metrics = Metrics()
    outbox = Outbox(broker, spool, metrics)
    assert await outbox.publish([msg(n) for n in range(10)]) is False
    assert [m.message_id for _, m in await spool.peek(100)] == ["id-3", "id-7"]
    assert b'od_bridge_spool_fallbacks_total{cause="timeout"} 1.0' in metrics.render()
    assert b'od_bridge_spool_fallback_cause{od_bridge_spool_fallback_cause="timeout"} 1.0' in (
        metrics.render()
    )


async def test_the_drainer_deletes_every_confirmed_row_of_a_failed_batch(spool: Spool) -> None:
    await spool.append([msg(n) for n in range(100)])
    failing = {f"id-{n}" for n in (0, 1, 50, 98)}
    broker = FlakyBroker(set(failing))
    drainer = Drainer(spool, broker, Metrics(), wake=asyncio.Event(), batch=100)
    with pytest.raises(PublishError):
        await drainer.run_once()
    left = [m.message_id for _, m in await spool.peek(1000)]
    assert left == ["id-0", "id-1", "id-50", "id-98"]  # only what was not confirmed
    assert await drainer.run_once() == 4
    assert spool.size == 0
    # Every row was confirmed exactly once, and nothing confirmed was sent again.
    assert sorted(broker.confirmed) == sorted(f"id-{n}" for n in range(100))
    assert len(broker.sent) == 100 + len(failing)


class RoutelessBroker(FlakyBroker):
    """Returns (no route) every row bound for one exchange; confirms the rest."""

    def __init__(self, exchange: str) -> None:
        super().__init__(set(), cause="returned")
        self.exchange = exchange

    async def publish(self, messages: Sequence[Message]) -> bool:
        returned = tuple(i for i, m in enumerate(messages) if m.exchange == self.exchange)
        self.confirmed += [m.message_id for i, m in enumerate(messages) if i not in returned]
        if returned:
            raise PublishError(
                "returned", unconfirmed=returned, returned=frozenset(returned), cause="returned"
            )
        return True


async def test_a_returned_row_is_parked_and_the_rows_behind_it_drain(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [msg(n) for n in range(20)]
    rows[3] = dataclasses.replace(rows[3], exchange="nowhere")
    await spool.append(rows)
    metrics = Metrics()
    drainer = Drainer(spool, RoutelessBroker("nowhere"), metrics, wake=asyncio.Event())
    assert await drainer.run_once() == 19  # no stall behind the returned row
    assert spool.size == 0 and spool.parked == 1
    [parked] = await spool.parked_rows()
    assert parked.message.message_id == "id-3" and "no route" in parked.reason
    [line] = [r for r in caplog.records if "parked" in r.getMessage()]
    assert line.exchanges == ["nowhere"]  # type: ignore[attr-defined]
    assert b"od_bridge_rows_parked_total 1.0" in metrics.render()
    assert await spool.retry_parked() == 1  # back at the tail, for another try
    assert spool.size == 1 and spool.parked == 0
    assert [m.message_id for _, m in await spool.peek(10)] == ["id-3"]
