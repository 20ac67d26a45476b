"""The spool on a tiny filesystem that fills up: 503 and not ready, no republishing, recovery."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.errors import SpoolError
from bridge.events import Message
from bridge.metrics import Metrics
from bridge.outbox import Drainer, Outbox
from bridge.publisher import InMemoryPublisher
from bridge.spool import Spool
from tests.tinydisk import tiny_disk as mounted


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own."""
    with mounted(tmp_path / "disk") as disk:
        yield disk


def rows(start: int, count: int) -> list[Message]:
    return [
        Message("ex", "rk", f"id-{n}", "com.opendental.db.Appointment", 0, b"x" * 1000)
        for n in range(start, start + count)
    ]


async def test_a_full_disk_never_republishes_and_recovers_by_itself(tiny_disk: Path) -> None:
    # Before: the drainer could never delete its published batch and published it again
    # every 2 s (20,490 messages for 930 accepted rows in 40 s), while /readyz said ready.
    spool = Spool(tiny_disk / "spool.sqlite3", 100_000, reserve_bytes=256 * 1024)
    await spool.open()
    publisher = InMemoryPublisher()
    outbox = Outbox(publisher, spool, Metrics())
    drainer = Drainer(spool, publisher, Metrics(), outbox.wake, batch=100)
    try:
        publisher.fail = True  # the broker is away: rows go to the spool until the disk fills
        accepted: list[str] = []
        refused = None
        while refused is None:
            batch = rows(len(accepted), 20)
            try:
                await outbox.publish(batch)
            except SpoolError as exc:
                refused = exc
            else:
                accepted += [m.message_id for m in batch]
        assert "disk under the spool is full" in str(refused)
        assert 300 < len(accepted) < 2000
        state = outbox.state()
        assert state["ready"] is False and "full" in state["reason"]

        # Something else takes the headroom too, so deletes fail for a while: the error
        # SQLite gives then (the reserve makes it rare enough that it is injected here).
        real_delete = spool._delete
        disk_full = True

        def delete_on_a_full_disk(first: int, last: int) -> int:
            if disk_full:
                full = sqlite3.OperationalError("database or disk is full")
                full.sqlite_errorcode = sqlite3.SQLITE_FULL
                raise full
            return real_delete(first, last)

        spool._delete = delete_on_a_full_disk  # type: ignore[method-assign]
        publisher.fail = False
        for _ in range(5):
            with pytest.raises(SpoolError):
                await drainer.run_once()  # published once; the delete retried, not the publish
        assert len(publisher.messages) == 100
        assert not outbox.ready  # the broker is back, but new rows would queue behind

        disk_full = False  # space comes back: no hand needed
        await drainer.drain()
        assert [m.message_id for m in publisher.messages] == accepted  # each exactly once
        assert spool.size == 0
        assert outbox.ready
        publisher.fail = True
        await outbox.publish(rows(10_000, 20))  # the spool takes rows again
        assert spool.size == 20
    finally:
        await spool.close()


async def test_the_reserve_keeps_deletes_possible(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk / "spool.sqlite3", 100_000, reserve_bytes=256 * 1024)
    await spool.open()
    publisher = InMemoryPublisher()
    outbox = Outbox(publisher, spool, Metrics())
    drainer = Drainer(spool, publisher, Metrics(), outbox.wake)  # batches of 1000
    try:
        publisher.fail = True
        accepted: list[str] = []
        while True:
            batch = rows(len(accepted), 20)
            try:
                await outbox.publish(batch)
            except SpoolError:
                break
            accepted += [m.message_id for m in batch]
        publisher.fail = False
        # A 1000-row delete needs more than this reserve: it is done in smaller transactions.
        assert await drainer.drain() == len(accepted)
        assert [m.message_id for m in publisher.messages] == accepted
    finally:
        await spool.close()
