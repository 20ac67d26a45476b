"""The spool's file: opened (a damaged one set aside), locked, watched, recreated if removed."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import spoolhealth
from .errors import SpoolError
from .events import Message

log = logging.getLogger("od_bridge.spool")


class SpoolFile:
    """Spool's file: open and lock it, watch it, and say (once) when it can no longer be trusted.

    Removed, replaced, truncated or corrupt is found within seconds (device and inode every
    `check_every_s`, SQLite's quick_check every `quick_check_every_s` or rarer on big files).
    """

    schema: str
    reserve_bytes: int
    _committed: int

    def __init__(self, path: Path, *, check_every_s: float, quick_check_every_s: float) -> None:
        self.path = path
        self.check_every_s = check_every_s
        self.quick_check_every_s = quick_check_every_s
        self._db: sqlite3.Connection | None = None
        self._lock: sqlite3.Connection | None = None
        self._lock_id = (0, 0)  # device and inode of the lock file held
        self._closing = False
        self._watch = spoolhealth.FileWatch(path)
        self._watcher: asyncio.Task[None] | None = None
        self._next_quick_check = 0.0
        self._next_recreate = 0.0
        self._recreate_backoff = 1.0
        self.damage: tuple[str, str] | None = None  # (kind, cause) once the file is unsafe
        self.set_aside: Path | None = None  # where a file found damaged at start was moved
        self.recreated = 0  # removed files replaced by a copy so far
        self.unreadable = 0  # rows a damaged spool holds that could not be read
        self._salvaging = False  # reading a damaged file: stepping over what cannot be read
        self._delivered_through = 0  # ... and past the rows already handed out and published
        self._handed_out: list[int] = []  # sequence numbers of the last rows handed out
        self.watched = asyncio.Event()  # set after each pass of the watch (tests await it)

    if TYPE_CHECKING:

        @property
        def size(self) -> int: ...
        async def _run(self, fn: Any, *args: Any) -> Any: ...
        def _delete(self, first: int, last: int) -> int: ...

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
            db.execute(self.schema)
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
                log.warning("spool check failed", exc_info=exc)  # class and frames (log.py)
            self.watched.set()

    async def check(self) -> None:
        """Is the open file still the one at the path, whole and sound? Recreate a removed one."""
        if self._db is None or self._closing:
            return
        if self.damage is None:
            found = await self._run(self._watch.check)
            if found is not None and found[0] == spoolhealth.TRUNCATED:
                # SQLite shortens the file itself after a VACUUM, at a later checkpoint: only
                # shorter *and* unsound is a truncation.
                problem = await asyncio.to_thread(self._quick_check)
                if problem is None:
                    await self._run(self._watch.remember)
                    found = None
                else:
                    found = (spoolhealth.TRUNCATED, f"{found[1]}; {problem[1]}")
            elif found is None and time.monotonic() >= self._next_quick_check:
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
        checker = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            problem = spoolhealth.quick_check(checker)
        finally:
            checker.close()
        if problem is None:
            return None
        return spoolhealth.CORRUPT, f"{self.path} failed SQLite's quick_check ({problem})"

    async def _peek_damaged(self, limit: int) -> list[tuple[int, Message]]:
        """The oldest readable rows not yet handed out; SpoolError once none is left to read."""
        found: list[tuple[int, Message]] = await self._run(self._read_damaged, limit)
        if found or not self.size:
            self._handed_out = [seq for seq, _ in found]
            return found
        if self.unreadable != self.size:
            self.unreadable = self.size  # counted (metric) and said once per change
            log.error(
                "rows in the damaged spool cannot be read; after a restart sets the file aside"
                " run: od-bridge spool salvage <file> -c <config>",
                extra={"rows": self.unreadable, "cause": self.damage[1] if self.damage else "-"},
            )
        raise SpoolError(f"{self.size} rows in the damaged spool cannot be read")

    def _read_damaged(self, limit: int) -> list[tuple[int, Message]]:
        assert self._db is not None
        readable = spoolhealth.readable_rows(self._db, after=self._delivered_through)
        return [(seq, Message(*row)) for seq, row in itertools.islice(readable, limit)]

    async def _forget_damaged(self, first: int, last: int) -> None:
        """Rows first..last were published: skip them from now on, and delete them if it can."""
        handed = sum(first <= seq <= last for seq in self._handed_out)
        try:
            removed: int = await self._run(self._delete, first, last)
        except SpoolError:
            removed = handed  # they stay in the file (a salvage may publish them again)
        self._delivered_through = max(self._delivered_through, last)
        self._committed -= removed

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
        self.recreated += 1
        log.warning(
            "spool file recreated at its path; accepting rows again",
            extra={"path": str(self.path), "rows_copied": copied},
        )

    def _reopen_fresh(self) -> int:
        assert self._db is not None
        self._relock()
        try:
            copied = spoolhealth.copy_rows(self._db, self.path)
            spoolhealth.install(self.path)
        except OSError as exc:
            raise SpoolError(f"spool file not recreated ({exc})") from None
        # Only now the old connection goes: closing it removes `<path>-wal` by name, so no
        # connection to the new file may exist before (the old WAL was removed by install).
        old, self._db = self._db, None
        old.close()
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
