"""Spool integrity: the open file still the one at its path, whole and sound; salvage."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("od_bridge.spool")

# Kinds of damage: each refuses rows until a restart, except "removed" (spoolfile.py recreates).
REMOVED = "removed"
REPLACED = "replaced"
TRUNCATED = "truncated"
CORRUPT = "corrupt"

_NEXT_ROW = (
    "SELECT seq, exchange, routing_key, message_id, type, timestamp, body"
    " FROM events WHERE seq > ? ORDER BY seq LIMIT 1"
)


class Corrupt(sqlite3.DatabaseError):
    """SQLite's own check found the file unsound (it reads as SQLITE_CORRUPT)."""

    sqlite_errorcode = sqlite3.SQLITE_CORRUPT


def damage(exc: sqlite3.Error) -> tuple[str, str] | None:
    """(kind, cause) when an SQLite error means the file is damaged or gone, else None."""
    code = getattr(exc, "sqlite_errorcode", 0)
    if code == sqlite3.SQLITE_READONLY_DBMOVED:
        return REMOVED, "the spool file was removed or renamed while in use"
    if code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CORRUPT, f"the spool file is corrupt ({exc})"
    if code & 0xFF == sqlite3.SQLITE_IOERR:
        return CORRUPT, f"I/O error on the spool file ({exc})"
    return None


def is_disk_full(exc: sqlite3.Error) -> bool:
    """True for SQLITE_FULL: no space left for the write."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    return shutil.disk_usage(path.parent).free  # statvfs on POSIX, GetDiskFreeSpaceEx on Windows


def reusable_bytes(db: sqlite3.Connection) -> int:
    """Free pages inside the file (deleted rows' space), which new rows reuse before growing it."""
    pages = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


class FileWatch:
    """The open spool's files by device and inode: says when one was removed, replaced or cut."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids: dict[Path, tuple[int, int]] = {}
        self._min_size = 0  # SQLite grows the main file at checkpoints; only VACUUM shrinks it

    def remember(self) -> None:
        """Take the files as they are now as the ones this process opened (and may shrink)."""
        self._ids.clear()
        for p in (self.path, Path(f"{self.path}-wal")):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            self._ids[p] = (st.st_dev, st.st_ino)
            if p == self.path:
                self._min_size = st.st_size

    def check(self) -> tuple[str, str] | None:
        """(kind, cause) if a file this process opened is gone, another file, or shorter."""
        for p in (self.path, Path(f"{self.path}-wal")):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                if p in self._ids:
                    return REMOVED, f"{p} was removed while in use"
                continue
            known = self._ids.get(p)
            if known is None:
                self._ids[p] = (st.st_dev, st.st_ino)  # the WAL appears with the first write
            elif known != (st.st_dev, st.st_ino):
                return REPLACED, f"{p} was replaced by another file while in use"
            if p == self.path:
                if st.st_size < self._min_size:
                    return TRUNCATED, f"{p} was truncated ({st.st_size} < {self._min_size} bytes)"
                self._min_size = st.st_size
        return None


def quick_check(db: sqlite3.Connection) -> str | None:
    """None when SQLite's quick_check finds the file sound, else its first complaint."""
    try:
        row = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = str(row[0]) if row else "no answer"
    return None if result == "ok" else result


def set_aside(path: Path, reason: str) -> Path:
    """Rename a damaged spool (and its WAL) to `<name>.corrupt-<UTC time>`; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", ""):  # the WAL first: a file without its WAL loses its last rows
        if os.path.exists(f"{path}{suffix}"):
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    if os.path.exists(f"{path}-shm"):
        os.remove(f"{path}-shm")  # an index SQLite rebuilds from the WAL
    log.error(
        "spool file is damaged; set aside, starting with an empty spool. Its readable rows are"
        " recovered with: od-bridge spool salvage <file> -c <config> (daemon stopped)",
        extra={"reason": reason, "file": str(target)},
    )
    return target


def copy_rows(db: sqlite3.Connection, path: Path) -> int:
    """Copy every table of `db` (same sequence numbers) into a new file `<path>.new`; its rows.

    Sequence numbers are kept, so a batch the drainer published from the old file is deleted
    from the new one, and FIFO order holds across the switch.
    """
    fresh = Path(f"{path}.new")
    _remove(fresh)
    schema = db.execute(
        "SELECT type, name, sql FROM main.sqlite_master"
        " WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'"
    ).fetchall()
    try:
        new = sqlite3.connect(fresh, isolation_level=None)
        try:
            new.execute("PRAGMA journal_mode=WAL")
            for _, _, sql in schema:
                new.execute(sql)
        finally:
            new.close()
        db.execute("ATTACH DATABASE ? AS fresh", (str(fresh),))
        try:
            with db:  # one transaction: the new file has every row or none
                db.execute("BEGIN IMMEDIATE")
                for kind, name, _ in schema:
                    if kind == "table":
                        # Names from the file's own schema, not from outside.
                        copy = f'INSERT INTO fresh."{name}" SELECT * FROM main."{name}"'  # noqa: S608
                        db.execute(copy)
                counter = "SELECT 1 FROM fresh.sqlite_master WHERE name = 'sqlite_sequence'"
                if db.execute(counter).fetchone():
                    db.execute("DELETE FROM fresh.sqlite_sequence")
                    db.execute(
                        "INSERT INTO fresh.sqlite_sequence SELECT * FROM main.sqlite_sequence"
                    )
            copied: int = db.execute("SELECT count(*) FROM fresh.events").fetchone()[0]
        finally:
            db.execute("DETACH DATABASE fresh")
    except BaseException:
        _remove(fresh)
        raise
    return copied


def install(path: Path) -> None:
    """Put `<path>.new` where a removed spool was, after the old one's leftovers are gone."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")
    if os.path.exists(f"{path}.new-wal"):
        os.replace(f"{path}.new-wal", f"{path}-wal")
    os.replace(f"{path}.new", path)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


def readable_rows(
    db: sqlite3.Connection,
    *,
    after: int = 0,
    skipped: list[int] | None = None,
    give_up_after: int = 1_000_000,
) -> Iterator[tuple[int, tuple[str, str, str, str, int, bytes]]]:
    """Every row of `events` after `after` that can still be read, oldest first, over bad pages.

    A damaged page fails only the lookups that land on it: after a failure the scan moves on
    one sequence number at a time, up to the highest number SQLite remembers handing out.
    The numbers stepped over are added to `skipped` (an upper bound of the rows lost).
    """
    last = _highest_seq(db)
    seq = after
    misses = 0
    while last is None or seq < last:
        try:
            row = db.execute(_NEXT_ROW, (seq,)).fetchone()
        except sqlite3.DatabaseError:
            seq += 1
            misses += 1
            if skipped is not None:
                skipped.append(seq)
            if misses > give_up_after:
                return
            continue
        if row is None:
            return
        misses = 0
        seq = row[0]
        yield seq, (row[1], row[2], row[3], row[4], row[5], bytes(row[6]))


def _highest_seq(db: sqlite3.Connection) -> int | None:
    for query in (
        "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
        "SELECT max(seq) FROM events",
    ):
        try:
            row = db.execute(query).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row and row[0] is not None:
            return int(row[0])
    return None
