"""Local SQLite outbox (WAL, synchronous=FULL): rows the broker could not confirm, kept FIFO."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import parking, spoolhealth, spoolrows
from .errors import SpoolError, SpoolFull
from .events import Message
from .spoolfile import SpoolFile, lock_file
from .spoolrows import SCHEMA, Stats, file_bytes

__all__ = ["Spool", "Stats", "file_bytes", "lock_file"]  # lock_file: where callers find it
log = logging.getLogger("od_bridge.spool")


class Spool(SpoolFile):
    """FIFO outbox. Appends are group-committed: many requests share one fsync, off the loop."""

    schema = SCHEMA

    def __init__(
        self,
        path: Path,
        max_events: int,
        *,
        reserve_bytes: int = 0,
        check_every_s: float = 1.0,
        quick_check_every_s: float = 10.0,
    ) -> None:
        super().__init__(path, check_every_s=check_every_s, quick_check_every_s=quick_check_every_s)
        self.max_events = max_events
        # Rows are refused while less than this is free, so that deletes can still commit.
        self.reserve_bytes = reserve_bytes
        # One thread owns the SQLite connection: writes and reads never run concurrently.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._committed = 0
        self._pending: list[tuple[Sequence[Message], asyncio.Future[None]]] = []
        self._pending_rows = 0
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # transactions (fsyncs) so far: group commit makes this << appends
        self._free = (0.0, 0)  # (when, bytes free): statvfs at most once a second
        self._reusable = 0  # bytes of free pages inside the file: rows fit there too
        self._disk_full_at: int | None = None  # bytes usable when a write last found no room
        self.parked = 0  # rows RabbitMQ returned, set aside (parking.py)

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (creating) the file, take the process lock, count what a previous run left.

        A file SQLite finds damaged is set aside (`<name>.corrupt-<time>`) and a new one
        started: one clear error line and a salvage command instead of a crash loop.
        """
        await self._run(self._open)
        self.parked = await self._run(self._parked_count)
        self._committer = asyncio.create_task(self._commit_loop(), name="spool-commit")
        self._watcher = asyncio.create_task(self._watch_loop(), name="spool-watch")

    async def close(self) -> None:
        """Commit what is pending, then close the file and release the lock (once)."""
        if self._closing:
            return
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._committer is not None:
            self._wakeup.set()
            await self._committer
            self._committer = None
        await self._run(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()  # ends the transaction: the lock is free
            self._lock = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        """`fn` in the spool's thread; SQLite's errors become SpoolError (one kind of failure)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            found = spoolhealth.damage(exc)
            if found is not None:
                self._damaged(*found)
                raise SpoolError(f"the spool is unusable: {found[1]}") from None
            if spoolhealth.is_disk_full(exc):
                self._disk_full_at = spoolhealth.free_bytes(self.path) + self._reusable
                raise SpoolFull("the disk under the spool is full") from None
            raise SpoolError(f"spool {fn.__name__.lstrip('_')} failed ({exc})") from None

    # --- parking (rows RabbitMQ returned: see parking.py) --------------------------------
    def _parked_count(self) -> int:
        assert self._db is not None
        return parking.count(self._db)

    async def park(self, seqs: list[int], reason: str) -> int:
        """Set spooled rows aside (no route): the rows behind them drain meanwhile."""
        assert self._db is not None
        moved: int = await self._run(parking.park, self._db, seqs, reason)
        self._committed -= moved
        self.parked += moved
        return moved

    async def parked_rows(self, limit: int | None = None) -> list[parking.Parked]:
        """Parked rows, oldest first."""
        assert self._db is not None
        found: list[parking.Parked] = await self._run(parking.rows, self._db, limit)
        return found

    async def retry_parked(self) -> int:
        """Put every parked row back at the tail of the spool; how many."""
        assert self._db is not None
        moved: int = await self._run(parking.retry, self._db)
        self._committed += moved
        self.parked -= moved
        return moved

    # --- writing ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Rows in the spool, counting those waiting for the next commit."""
        return self._committed + self._pending_rows

    async def append(self, messages: Sequence[Message]) -> None:
        """Return once the messages are committed to disk; SpoolFull when over capacity."""
        if not messages:
            return
        if self._db is None or self._closing:
            raise SpoolError("spool is not open")
        if self.damage is not None:
            raise SpoolError(f"the spool is unusable: {self.damage[1]}")
        if self.size + len(messages) > self.max_events:
            raise SpoolFull(f"spool holds {self.size} of {self.max_events} rows")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((messages, done))
        self._pending_rows += len(messages)
        self._wakeup.set()
        await done

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._pending:
                await self._commit_pending()
            if self._closing and not self._pending:
                return

    async def _commit_pending(self) -> None:
        batch, self._pending = self._pending, []
        rows = sum(len(m) for m, _ in batch)
        try:
            if self.damage is not None:  # found while these waited: not into that file
                raise SpoolError(f"the spool is unusable: {self.damage[1]}")
            await self._run(self._insert, [m for messages, _ in batch for m in messages])
        except Exception as exc:  # the committer must outlive any failure, and answer every waiter
            failure = (
                exc if isinstance(exc, SpoolError) else SpoolError(f"spool write failed ({exc!r})")
            )
            for _, done in batch:
                if not done.done():
                    done.set_exception(failure)
        else:
            self.commits += 1
            self._committed += rows
            self._disk_full_at = None
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
        finally:
            self._pending_rows -= rows

    def _insert(self, messages: list[Message]) -> None:
        assert self._db is not None
        if self.reserve_bytes:
            need = self.reserve_bytes + sum(len(m.body) for m in messages)
            have = spoolhealth.free_bytes(self.path) + self._reusable
            if have < need:
                self._disk_full_at = have  # not ready until there is more than this
                # What is left stays for deletes: without it a published batch could not be
                # deleted, and would be published again and again.
                raise SpoolFull("the disk under the spool is full (spool.reserve_bytes kept free)")
        with self._db:  # one transaction, one fsync, for every request in the group
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO events (exchange, routing_key, message_id, type, timestamp, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (m.exchange, m.routing_key, m.message_id, m.type, m.timestamp, m.body)
                    for m in messages
                ],
            )
        self._reusable = spoolhealth.reusable_bytes(self._db)

    def room(self) -> str | None:
        """Why no row can be committed now (damaged, full, disk full), or None when one can."""
        if self.damage is not None:
            return self.damage[1]
        if self.size >= self.max_events:
            return f"spool holds {self.size} of {self.max_events} rows"
        when, free = self._free
        now = time.monotonic()
        if now - when >= 1.0:  # readiness is polled: one statvfs a second is plenty
            free = spoolhealth.free_bytes(self.path)
            self._free = (now, free)
        if self._disk_full_at is not None and free + self._reusable <= self._disk_full_at:
            return "the disk under the spool is full"
        if free + self._reusable < self.reserve_bytes:
            return "the disk under the spool is full (spool.reserve_bytes kept free)"
        return None

    # --- reading ---------------------------------------------------------------------------
    async def peek(self, limit: int) -> list[tuple[int, Message]]:
        """The oldest `limit` rows with their sequence numbers, oldest first.

        From a damaged file: the oldest rows that can still be read, stepping over bad pages.
        """
        if not self._salvaging:
            try:
                assert self._db is not None
                rows: list[tuple[int, Message]] = await self._run(spoolrows.peek, self._db, limit)
            except SpoolError:
                if self.damage is None:
                    raise
                self._salvaging = True
            else:
                return rows
        return await self._peek_damaged(limit)

    async def delete(self, first: int, last: int) -> None:
        """Remove rows first..last (confirmed by the broker)."""
        if self._salvaging:
            await self._forget_damaged(first, last)
            return
        deleting = asyncio.ensure_future(self._run(self._delete, first, last))
        try:
            removed: int = await asyncio.shield(deleting)
        except asyncio.CancelledError:
            # The spool thread finishes the delete anyway (at shutdown, say): keep the count
            # true to the file before passing the cancellation on.
            self._committed -= await deleting
            raise
        self._committed -= removed

    def _delete(self, first: int, last: int) -> int:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (first, last))
        self._reusable = spoolhealth.reusable_bytes(self._db)
        return cursor.rowcount

    async def shrink(self) -> None:
        """After a drain: free SQLite's page cache and, if no row is left, the file's space.

        A spool that held an outage's rows keeps its size otherwise (SQLite reuses free pages,
        it never returns them): up to ~1 KB per row, ~1 GB at the default `max_events`.
        """
        await self._run(self._shrink)

    def _shrink(self) -> None:
        assert self._db is not None
        # The spool thread runs one operation at a time: no row can arrive between the check
        # and the VACUUM. On an empty table VACUUM takes ~1 ms; truncating the WAL (into which
        # it wrote the new, small database) gives the space back: ~0.3 s for a 0.9 GB file.
        if self._db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if self.damage is None:  # a removed or replaced file stays found out
                self._watch.remember()  # smaller by our own hand: not a truncation
            self._reusable = spoolhealth.reusable_bytes(self._db)
        self._db.execute("PRAGMA shrink_memory")

    async def stats(self) -> Stats:
        """Depth, age of the oldest row and file size."""
        assert self._db is not None
        stats: Stats = await self._run(spoolrows.stats, self._db, self.path)
        return stats

    async def oldest_timestamp(self) -> float | None:
        """When the oldest waiting row was accepted (Unix time), or None when empty."""
        assert self._db is not None
        found: float | None = await self._run(spoolrows.oldest, self._db)
        return found
