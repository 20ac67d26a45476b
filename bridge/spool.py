"""Local SQLite outbox (WAL, synchronous=FULL): rows the broker could not confirm, kept FIFO."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import spoolhealth
from .errors import SpoolError, SpoolFull
from .events import Message

log = logging.getLogger("od_bridge.spool")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Stats:
    """What `od-bridge spool stats` shows."""

    depth: int
    oldest_timestamp: int | None
    file_bytes: int


class Spool:
    """FIFO outbox. Appends are group-committed: many requests share one fsync, off the loop."""

    def __init__(
        self,
        path: Path,
        max_events: int,
        *,
        reserve_bytes: int = 0,
        check_every_s: float = 1.0,
        quick_check_every_s: float = 10.0,
    ) -> None:
        self.path = path
        self.max_events = max_events
        # Rows are refused while less than this is free, so that deletes can still commit.
        self.reserve_bytes = reserve_bytes
        self.check_every_s = check_every_s
        self.quick_check_every_s = quick_check_every_s
        self._db: sqlite3.Connection | None = None
        self._lock: sqlite3.Connection | None = None
        self._lock_id = (0, 0)  # device and inode of the lock file held
        # One thread owns the SQLite connection: writes and reads never run concurrently.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._committed = 0
        self._pending: list[tuple[Sequence[Message], asyncio.Future[None]]] = []
        self._pending_rows = 0
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0  # transactions (fsyncs) so far: group commit makes this << appends
        self._watch = spoolhealth.FileWatch(path)
        self._watcher: asyncio.Task[None] | None = None
        self._next_quick_check = 0.0
        self.damage: tuple[str, str] | None = None  # (kind, cause) once the file is unsafe
        self.unreadable = 0  # rows a damaged spool holds that could not be read
        self.set_aside: Path | None = None  # where a file found damaged at start was moved
        self._free = (0.0, 0)  # (when, bytes free): statvfs at most once a second
        self._reusable = 0  # bytes of free pages inside the file: rows fit there too
        self._disk_full_at: int | None = None  # bytes usable when a write last found no room
        self._next_recreate = 0.0
        self._recreate_backoff = 1.0

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (creating) the file, take the process lock, count what a previous run left.

        A file SQLite finds damaged is set aside (`<name>.corrupt-<time>`) and a new one
        started: one clear error line and a salvage command instead of a crash loop.
        """
        await self._run(self._open)
        self._committer = asyncio.create_task(self._commit_loop(), name="spool-commit")
        self._watcher = asyncio.create_task(self._watch_loop(), name="spool-watch")

    def _open(self) -> None:
        self._take_lock()
        try:
            try:
                db = self._connect()
            except sqlite3.DatabaseError as exc:
                found = spoolhealth.damage(exc)
                if found is None or found[0] != spoolhealth.CORRUPT:
                    raise
                self.set_aside = spoolhealth.set_aside(self.path, str(exc))
                db = self._connect()
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path} cannot be opened ({exc})") from None
        self._db = db
        self._watch.remember()

    def _connect(self) -> sqlite3.Connection:
        """A connection to a sound spool file (created if absent), its rows counted."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if self.reserve_bytes:
                # SQLite grows the main file when it checkpoints the WAL into it: keeping the
                # WAL under half the reserve means that growth, and the deletes, always fit.
                pages = self.reserve_bytes // 2 // db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA wal_autocheckpoint={max(pages, 16)}")
            db.execute(_SCHEMA)
            problem = spoolhealth.quick_check(db)
            if problem is not None:
                raise spoolhealth.Corrupt(f"quick_check: {problem}")
            self._committed = db.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _take_lock(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool.path {self.path} is not writable ({exc.strerror})") from None
        lock = Path(f"{self.path}.lock")
        self._lock = lock_file(lock)
        st = os.stat(lock)
        self._lock_id = (st.st_dev, st.st_ino)

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

    # --- integrity -------------------------------------------------------------------------
    def _damaged(self, kind: str, cause: str) -> None:
        """From now on refuse rows (503, not ready); one error line names the cause."""
        if self.damage is not None:
            return
        self.damage = (kind, cause)
        then = (
            "its rows are being copied into a new file at the same path"
            if kind == spoolhealth.REMOVED
            else "until a restart, which sets the file aside; readable rows are still delivered"
        )
        log.error(
            f"spool unusable, answering 503 and not ready: {then}",
            extra={"cause": cause, "depth": self.size},
        )

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            try:
                await self.check()
            except Exception as exc:  # task boundary: the watch must outlive any surprise
                log.warning("spool check failed", extra={"error": repr(exc)})

    async def check(self) -> None:
        """Is the open file still the one at the path, whole and sound? Recreate a removed one."""
        if self._db is None or self._closing:
            return
        if self.damage is None:
            found = await self._run(self._watch.check)
            if found is None and time.monotonic() >= self._next_quick_check:
                started = time.monotonic()
                found = await asyncio.to_thread(self._quick_check)
                # A cheap cadence: quick_check reads the whole file, so at most ~5% of the time.
                spent = time.monotonic() - started
                pause = max(self.quick_check_every_s, 20 * spent)
                self._next_quick_check = time.monotonic() + pause
            if found is not None:
                self._damaged(*found)
        removed = self.damage is not None and self.damage[0] == spoolhealth.REMOVED
        if removed and time.monotonic() >= self._next_recreate:
            await self._recreate()

    def _quick_check(self) -> tuple[str, str] | None:
        # Its own short-lived connection, off the spool's thread (commits go on meanwhile),
        # and with no page cache that could hide what is on disk now.
        checker = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            problem = spoolhealth.quick_check(checker)
        finally:
            checker.close()
        if problem is None:
            return None
        return spoolhealth.CORRUPT, f"{self.path} failed SQLite's quick_check ({problem})"

    async def _recreate(self) -> None:
        """Copy a removed file's rows (still open here) into a new file at the path; use it."""
        try:
            copied: int = await self._run(self._reopen_fresh)
        except SpoolError as exc:
            self._recreate_backoff = min(self._recreate_backoff * 2, 60.0)
            self._next_recreate = time.monotonic() + self._recreate_backoff
            log.warning(
                "spool not recreated yet; rows stay in the removed file, delivered from there",
                extra={"error": str(exc), "retry_in_s": self._recreate_backoff},
            )
            return
        self._recreate_backoff = 1.0
        self.damage = None
        log.warning(
            "spool file recreated at its path; accepting rows again",
            extra={"path": str(self.path), "rows_copied": copied},
        )

    def _reopen_fresh(self) -> int:
        assert self._db is not None
        self._relock()
        copied = spoolhealth.copy_rows(self._db, self.path)
        old, self._db = self._db, None
        old.close()
        spoolhealth.install(self.path)
        self._db = self._connect()
        self._watch.remember()
        return copied

    def _relock(self) -> None:
        """Hold the lock at the path again if it was removed too (else another daemon could)."""
        try:
            st = os.stat(f"{self.path}.lock")
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == self._lock_id:
            return
        old = self._lock
        self._take_lock()
        if old is not None:
            old.close()

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
        """The oldest `limit` rows with their sequence numbers, oldest first."""
        try:
            rows: list[tuple[int, Message]] = await self._run(self._peek, limit)
        except SpoolError:
            if self.damage is not None and self.unreadable != self.size:
                self.unreadable = self.size  # counted (metric) and said once per change
                log.error(
                    "rows in the damaged spool cannot be read; after a restart set them aside"
                    " and run: od-bridge spool salvage <file> -c <config>",
                    extra={"rows": self.unreadable, "cause": self.damage[1]},
                )
            raise
        return rows

    def _peek(self, limit: int) -> list[tuple[int, Message]]:
        assert self._db is not None
        cursor = self._db.execute(
            "SELECT seq, exchange, routing_key, message_id, type, timestamp, body"
            " FROM events ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            (
                seq,
                Message(
                    exchange=exchange,
                    routing_key=routing_key,
                    message_id=message_id,
                    type=type_,
                    timestamp=timestamp,
                    body=bytes(body),
                ),
            )
            for seq, exchange, routing_key, message_id, type_, timestamp, body in cursor
        ]

    async def delete(self, first: int, last: int) -> None:
        """Remove rows first..last (confirmed by the broker)."""
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
        stats: Stats = await self._run(self._stats)
        return stats

    def _stats(self) -> Stats:
        assert self._db is not None
        depth, oldest = self._db.execute("SELECT count(*), min(timestamp) FROM events").fetchone()
        return Stats(depth=depth, oldest_timestamp=oldest, file_bytes=file_bytes(self.path))


def file_bytes(path: Path) -> int:
    """A spool's size on disk: the database file and its WAL (readable while a daemon runs)."""
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))


def lock_file(path: Path) -> sqlite3.Connection:
    """Hold `path` exclusively until the returned connection is closed (or the process ends).

    SQLite's own file locking, the same code on every platform: POSIX locks on Linux and macOS,
    LockFileEx on Windows (which has no fcntl), both dropped by the OS when a process dies, so a
    killed daemon never leaves a stale lock behind. An open EXCLUSIVE transaction that writes
    nothing is the lock; journal_mode=OFF keeps it from leaving a -journal file beside it.
    """
    try:
        lock = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    except sqlite3.Error as exc:
        raise SpoolError(f"spool lock {path} cannot be opened ({exc})") from None
    try:
        lock.execute("PRAGMA journal_mode=OFF")
        lock.execute("BEGIN EXCLUSIVE")
    except sqlite3.Error as exc:
        lock.close()
        if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
            spool = path.with_name(path.name.removesuffix(".lock"))
            raise SpoolError(f"spool {spool} is in use by another od-bridge process") from None
        raise SpoolError(f"spool lock {path} is not writable ({exc})") from None
    return lock
