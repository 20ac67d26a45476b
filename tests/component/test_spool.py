"""The SQLite spool and the outbox around it: FIFO, group commit, capacity, crash safety."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from bridge.errors import PublishError, SpoolError, SpoolFull
from bridge.events import Message
from bridge.metrics import Metrics
from bridge.outbox import Drainer, Outbox
from bridge.publisher import InMemoryPublisher
from bridge.spool import Spool

ROOT = Path(__file__).resolve().parents[2]


def msg(n: int) -> Message:
    return Message(
        "ex", f"rk.{n}", f"id-{n}", "com.opendental.db.Appointment", 1_700_000_000, b"%d" % n
    )


async def test_fifo_round_trip(spool: Spool) -> None:
    await spool.append([msg(1), msg(2)])
    await spool.append([msg(3)])
    rows = await spool.peek(10)
    assert [m for _, m in rows] == [msg(1), msg(2), msg(3)]
    await spool.delete(rows[0][0], rows[1][0])
    assert spool.size == 1
    assert [m for _, m in await spool.peek(10)] == [msg(3)]


async def test_concurrent_appends_share_commits(spool: Spool) -> None:
    await asyncio.gather(*(spool.append([msg(n)]) for n in range(200)))
    assert spool.size == 200
    assert spool.commits < 200  # group commit: many requests per fsync
    assert [m.message_id for _, m in await spool.peek(1000)] == [f"id-{n}" for n in range(200)]


async def test_rows_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    first = Spool(path, 100)
    await first.open()
    await first.append([msg(1), msg(2)])
    await first.close()
    second = Spool(path, 100)
    await second.open()
    assert second.size == 2
    assert (await second.stats()).depth == 2
    await second.close()


async def test_capacity_is_enforced_whole_requests_only(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.sqlite3", max_events=3)
    await s.open()
    await s.append([msg(1), msg(2)])
    with pytest.raises(SpoolFull):
        await s.append([msg(3), msg(4)])
    assert s.size == 2
    await s.close()


async def test_a_full_disk_is_spool_full(spool: Spool) -> None:
    def cap(_: None = None) -> None:
        assert spool._db is not None
        spool._db.execute("PRAGMA max_page_count=8")  # emulates ENOSPC for SQLite

    await asyncio.get_running_loop().run_in_executor(spool._thread, cap)
    with pytest.raises(SpoolFull):
        await spool.append([Message("ex", "rk", f"id{n}", "t", 0, b"x" * 4000) for n in range(50)])
    assert spool.size == 0


async def test_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    s = Spool(blocker / "spool.sqlite3", 10)
    with pytest.raises(SpoolError, match="not writable"):
        await s.open()


async def test_one_process_per_spool_file(spool: Spool) -> None:
    other = Spool(spool.path, 10)
    with pytest.raises(SpoolError, match="in use"):
        await other.open()


async def test_the_lock_is_free_once_the_spool_is_closed(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool.sqlite3", 10)
    await first.open()
    await first.close()
    second = Spool(first.path, 10)
    await second.open()
    await second.close()
    # The lock leaves no journal behind, only the lock file itself.
    assert sorted(p.name for p in tmp_path.glob("spool.sqlite3.lock*")) == ["spool.sqlite3.lock"]


async def test_the_lock_of_a_killed_process_does_not_outlive_it(tmp_path: Path) -> None:
    """Another process holds the lock (as on Windows: no fcntl there); SIGKILL frees it."""
    path = tmp_path / "spool.sqlite3"
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import tests.windows_like, sys; from pathlib import Path; from bridge.spool import"
        f" lock_file; lock = lock_file(Path({str(path) + '.lock'!r})); print('held', flush=True);"
        " sys.stdin.read()",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        refused = Spool(path, 10)
        with pytest.raises(SpoolError, match="in use by another od-bridge process"):
            await refused.open()
    finally:
        holder.kill()
        await holder.wait()
    after = Spool(path, 10)
    await after.open()
    await after.close()


async def test_outbox_spools_while_the_broker_fails_and_drains_in_order(spool: Spool) -> None:
    publisher = InMemoryPublisher()
    outbox = Outbox(publisher, spool, Metrics())
    drainer = Drainer(spool, publisher, Metrics(), outbox.wake, batch=2)
    await outbox.publish([msg(1)])
    publisher.fail = True
    await outbox.publish([msg(2), msg(3)])
    assert outbox.wake.is_set()
    publisher.fail = False
    await outbox.publish([msg(4)])  # the spool is not empty: this one queues behind it
    assert [m.message_id for m in publisher.messages] == ["id-1"]
    with pytest.raises(PublishError):
        publisher.fail = True
        await drainer.run_once()
    publisher.fail = False
    assert await drainer.drain() == 3
    assert spool.size == 0
    assert [m.message_id for m in publisher.messages] == ["id-1", "id-2", "id-3", "id-4"]
    await outbox.publish([msg(5)])  # empty again: straight to the broker
    assert publisher.messages[-1].message_id == "id-5"


async def test_drainer_task_wakes_up_and_empties_the_spool(spool: Spool) -> None:
    publisher = InMemoryPublisher()
    outbox = Outbox(publisher, spool, Metrics())
    drainer = Drainer(spool, publisher, Metrics(), outbox.wake)
    publisher.fail = True
    await outbox.publish([msg(1), msg(2)])
    publisher.fail = False
    task = asyncio.create_task(drainer.run())
    try:
        await asyncio.wait_for(drainer.idle.wait(), 5)  # set once it has emptied the spool
        assert spool.size == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [m.message_id for m in publisher.messages] == ["id-1", "id-2"]


async def test_without_a_spool_a_broker_failure_is_an_error() -> None:
    publisher = InMemoryPublisher()
    publisher.fail = True
    with pytest.raises(PublishError):
        await Outbox(publisher, None, Metrics()).publish([msg(1)])


def test_spool_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    async def make() -> None:
        s = Spool(tmp_path / "s.sqlite3", 10)
        await s.open()
        await s.append([msg(1)])
        await s.close()

    asyncio.run(make())
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_not_ready_when_the_broker_is_down_and_the_spool_is_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", max_events=2)
    await spool.open()
    publisher = InMemoryPublisher()
    publisher.fail = True
    outbox = Outbox(publisher, spool, Metrics())
    assert outbox.ready
    assert await outbox.publish([msg(1), msg(2)]) is False  # spooled, not confirmed
    assert not outbox.ready
    assert outbox.state() == {
        "ready": False,
        "broker": "disconnected",
        "spool": 2,
        "reason": "spool holds 2 of 2 rows",
    }
    await spool.close()


async def test_an_emptied_spool_gives_its_cache_back_once_per_outage(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    shrinks: list[int] = []
    real_shrink = spool.shrink

    async def counted() -> None:
        shrinks.append(spool.size)
        await real_shrink()

    monkeypatch.setattr(spool, "shrink", counted)
    publisher = InMemoryPublisher()
    outbox = Outbox(publisher, spool, Metrics())
    drainer = Drainer(spool, publisher, Metrics(), outbox.wake)
    task = asyncio.create_task(drainer.run())
    try:
        await asyncio.wait_for(drainer.idle.wait(), 5)
        assert shrinks == []  # nothing was drained: nothing to give back
        for outage in (1, 2):
            publisher.fail = True
            await outbox.publish([msg(outage)])
            publisher.fail = False
            drainer.idle.clear()
            await asyncio.wait_for(drainer.idle.wait(), 5)
            assert shrinks == [0] * outage
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_emptied_spool_gives_its_disk_space_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", max_events=10_000)
    await spool.open()
    try:
        big = [dataclasses.replace(msg(n), body=b"x" * 1000) for n in range(3000)]
        for start in range(0, len(big), 500):
            await spool.append(big[start : start + 500])
        rows = await spool.peek(3000)
        await spool.delete(rows[0][0], rows[1999][0])
        full = (await spool.stats()).file_bytes
        assert full > 3_000_000
        await spool.shrink()  # 1,000 rows left: they and the file's size stay
        assert [m for _, m in await spool.peek(3000)] == big[2000:]
        await spool.delete(rows[2000][0], rows[-1][0])
        await spool.shrink()
        assert (await spool.stats()).file_bytes < 100_000
        await spool.append([msg(1), msg(2)])
        after = await spool.peek(10)
        assert [m for _, m in after] == [msg(1), msg(2)]
        assert after[0][0] > rows[-1][0]  # sequence numbers keep growing: FIFO across it
    finally:
        await spool.close()


async def test_a_failed_shrink_is_a_spool_error(spool: Spool) -> None:
    assert spool._db is not None
    spool._db.close()  # any SQLite failure will do
    with pytest.raises(SpoolError, match="spool shrink failed"):
        await spool.shrink()


async def test_the_committer_survives_any_failure_and_answers_every_writer(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_insert = spool._insert

    def broken(messages: list[Message]) -> None:
        monkeypatch.setattr(spool, "_insert", real_insert)  # fails once
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    monkeypatch.setattr(spool, "_insert", broken)
    with pytest.raises(SpoolError, match="OverflowError"):
        await asyncio.wait_for(spool.append([msg(1)]), 5)
    assert spool.size == 0
    await asyncio.wait_for(spool.append([msg(2)]), 5)  # the committer is still there
    assert [m for _, m in await spool.peek(10)] == [msg(2)]


async def test_a_delete_cancelled_midway_keeps_the_count_true(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await spool.append([msg(1), msg(2), msg(3)])
    rows = await spool.peek(10)
    started, go_on = threading.Event(), threading.Event()
    real_delete = spool._delete

    def slow_delete(first: int, last: int) -> int:
        started.set()
        go_on.wait(5)
        return real_delete(first, last)

    monkeypatch.setattr(spool, "_delete", slow_delete)
    task = asyncio.create_task(spool.delete(rows[0][0], rows[-1][0]))
    await asyncio.wait_for(asyncio.to_thread(started.wait, 5), 5)  # running in the spool thread
    task.cancel()  # e.g. the drainer stopped at shutdown
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spool.size == len(await spool.peek(10)) == 0
