"""The spool file removed, replaced or corrupted under a running bridge; set aside at start."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge import spoolcli
from bridge.errors import SpoolError
from bridge.events import Message
from bridge.metrics import Metrics
from bridge.outbox import Drainer, Outbox
from bridge.publisher import InMemoryPublisher
from bridge.spool import Spool
from tests.support import make_config


def rows(start: int, count: int, size: int = 1000) -> list[Message]:
    return [
        Message("ex", "rk", f"id-{n}", "t", 0, b"%08d" % n * (size // 8))
        for n in range(start, start + count)
    ]


class Bridge:
    """A spool, an outbox and a drainer over a publisher the test can fail (the broker away)."""

    def __init__(self, path: Path) -> None:
        self.spool = Spool(path, max_events=100_000)
        self.publisher = InMemoryPublisher()
        self.outbox = Outbox(self.publisher, self.spool, Metrics())
        self.drainer = Drainer(self.spool, self.publisher, Metrics(), self.outbox.wake)

    async def accept(self, messages: list[Message]) -> int:
        """POST them as a request would: the rows answered 200 (0 when refused, a 503)."""
        try:
            await self.outbox.publish(messages)
        except SpoolError:
            return 0
        return len(messages)

    def delivered(self) -> list[str]:
        return [m.message_id for m in self.publisher.messages]


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    b = Bridge(tmp_path / "var" / "spool.sqlite3")
    await b.spool.open()
    yield b
    await b.spool.close()


@pytest.mark.parametrize("removed", ["every file", "the main file"])
async def test_a_spool_removed_while_running_is_recreated_with_every_row(
    bridge: Bridge, caplog: pytest.LogCaptureFixture, removed: str
) -> None:
    # Before: 200s went on into the unlinked file, /readyz said ready, nothing was logged,
    # and after a restart the rows were gone (143,273 in the field test).
    bridge.publisher.fail = True
    accepted = [m for n in range(5) for m in rows(n * 100, 100)]
    for start in range(0, 500, 100):
        assert await bridge.accept(accepted[start : start + 100]) == 100
    path = bridge.spool.path
    if removed == "the main file":
        path.unlink()  # its WAL (the newest rows) stays behind, still in use
    else:
        for leftover in path.parent.iterdir():  # `rm -rf var/*`: the lock and WAL go too
            leftover.unlink()
    with caplog.at_level(logging.WARNING, logger="od_bridge"):
        await bridge.spool.check()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "spool unusable, answering 503 and not ready: its rows are being copied into a new"
        " file at the same path"
    ]
    assert bridge.spool.damage is None  # copied and in use again
    assert path.exists() and Path(f"{path}.lock").exists()
    later = rows(500, 100)
    assert await bridge.accept(later) == 100
    await bridge.spool.close()

    again = Bridge(path)  # a restart: what was answered 200 is in the file at the path
    await again.spool.open()
    try:
        assert await again.drainer.drain() == 600
        assert again.delivered() == [m.message_id for m in accepted + later]
    finally:
        await again.spool.close()


async def test_a_replaced_spool_answers_503_and_delivers_the_rows_it_held(
    bridge: Bridge, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge.publisher.fail = True
    accepted = rows(0, 300)
    assert await bridge.accept(accepted) == 300
    other = tmp_path / "restored-backup.sqlite3"
    other.write_bytes(b"")
    os.replace(other, bridge.spool.path)
    with caplog.at_level(logging.WARNING, logger="od_bridge"):
        for _ in range(3):
            await bridge.spool.check()
        assert await bridge.accept(rows(300, 10)) == 0  # 503, never 200 into a doubtful file
        bridge.publisher.fail = False
        assert await bridge.accept(rows(310, 10)) == 0  # also with the broker back
    state = bridge.outbox.state()
    assert state["ready"] is False
    assert "was replaced by another file" in state["reason"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "replaced" in str(errors[0].__dict__["cause"])
    # The rows it held are still readable through the open file: all delivered.
    assert await bridge.drainer.drain() == 300
    assert bridge.delivered() == [m.message_id for m in accepted]
    assert bridge.spool.unreadable == 0


async def checkpoint(spool: Spool) -> None:
    """Move the WAL's pages into the main file, as SQLite does every ~4 MB."""

    def wal_checkpoint() -> None:
        assert spool._db is not None
        spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    await spool._run(wal_checkpoint)


async def test_a_truncated_spool_is_found_at_the_next_check(bridge: Bridge) -> None:
    bridge.publisher.fail = True
    assert await bridge.accept(rows(0, 2000)) == 2000
    await checkpoint(bridge.spool)
    await bridge.spool.check()  # the watch's pass each second sees the file at its size
    size = bridge.spool.path.stat().st_size
    os.truncate(bridge.spool.path, size // 2)  # a restore cut short, a bad copy
    await bridge.spool.check()  # device and inode the same, but shorter: no quick_check needed
    assert bridge.spool.damage is not None
    assert bridge.spool.damage[0] == "truncated"
    assert f"{size // 2} < {size} bytes" in bridge.spool.damage[1]
    assert await bridge.accept(rows(2000, 1)) == 0


async def test_a_file_sqlite_itself_made_smaller_is_not_a_truncation(bridge: Bridge) -> None:
    bridge.publisher.fail = True
    assert await bridge.accept(rows(0, 2000)) == 2000
    await checkpoint(bridge.spool)
    await bridge.spool.check()

    def vacuum_checkpointed_later() -> None:  # as when a reader held up shrink()'s checkpoint
        assert bridge.spool._db is not None
        bridge.spool._db.execute("DELETE FROM events")
        bridge.spool._db.execute("VACUUM")
        bridge.spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    await bridge.spool._run(vacuum_checkpointed_later)
    await bridge.spool.check()
    assert bridge.spool.damage is None


def corrupt(path: Path, first_page: int, pages: int) -> None:
    """Overwrite whole pages of the main file with garbage, as a bad disk or a stray write."""
    with open(path, "r+b") as f:
        f.seek(first_page * 4096)
        f.write(b"\xa5" * 4096 * pages)


async def test_a_spool_corrupted_while_running_is_found_and_its_loss_reported(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: 308,120 more 200s into a file it could no longer read, a misleading info line
    # 5,759 times, and a restart that refused the file.
    bridge.publisher.fail = True
    accepted = rows(0, 2000)
    for start in range(0, 2000, 500):
        assert await bridge.accept(accepted[start : start + 500]) == 500
    await checkpoint(bridge.spool)
    corrupt(bridge.spool.path, 40, 30)
    with caplog.at_level(logging.WARNING, logger="od_bridge"):
        await bridge.spool.check()  # quick_check, with its own connection
        assert bridge.spool.damage is not None
        assert "quick_check" in bridge.spool.damage[1]
        assert await bridge.accept(rows(5000, 1)) == 0
        assert not bridge.outbox.ready
        bridge.publisher.fail = False
        await bridge.drainer.drain()
    delivered = bridge.delivered()
    order = {m.message_id: n for n, m in enumerate(accepted)}
    assert sorted(delivered, key=order.__getitem__) == delivered  # in order, over the gap
    # Every row answered 200 arrived, or is counted (metric) and said (log) as unreadable:
    # rows after the damaged pages too, not only those before them.
    assert len(delivered) + bridge.spool.unreadable == 2000
    assert 1800 < len(delivered) < 2000
    assert delivered[-1] == accepted[-1].message_id
    said = [r for r in caplog.records if r.getMessage().startswith("rows in the damaged spool")]
    assert len(said) == 1 and said[0].__dict__["rows"] == bridge.spool.unreadable
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


async def test_a_damaged_spool_is_set_aside_at_start_and_salvaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spool.sqlite3"
    first = Bridge(path)
    await first.spool.open()
    first.publisher.fail = True
    for start in range(0, 2000, 500):
        await first.accept(rows(start, 500))
    await checkpoint(first.spool)
    await first.spool.close()
    corrupt(path, 40, 30)

    restarted = Bridge(path)
    with caplog.at_level(logging.ERROR, logger="od_bridge"):
        await restarted.spool.open()  # not a crash loop: a fresh spool
    try:
        aside = restarted.spool.set_aside
        assert aside is not None and aside.name.startswith("spool.sqlite3.corrupt-")
        assert restarted.spool.size == 0
        restarted.publisher.fail = True
        assert await restarted.accept(rows(9000, 1)) == 1  # spooled in the fresh file
        (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "od-bridge spool salvage" in line.getMessage()
        assert line.__dict__["file"] == str(aside)
    finally:
        await restarted.spool.close()

    config = make_config(spool={"enabled": True, "path": str(path)})
    await asyncio.to_thread(spoolcli.run, config, "salvage", aside)
    out = capsys.readouterr().out
    salvaged = int(out.split("salvaged ")[1].split(" rows")[0])
    assert 1800 < salvaged < 2000  # 30 pages of ~4 rows each are gone, the rest is back
    lost = out.split("rows that could not be read: ")[1].removeprefix("at most ").split()[0]
    assert int(lost) >= 2000 - salvaged  # exact when the file can still be counted
    back = Bridge(path)
    await back.spool.open()
    try:
        assert back.spool.size == salvaged + 1
    finally:
        await back.spool.close()
