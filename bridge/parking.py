"""Parked rows: spooled rows RabbitMQ returned (no route), set aside so the rest can drain.

SQL run in the spool's own thread (Spool.park / parked_rows / retry_parked), plus a read-only
reader for `od-bridge spool parked|export` while a daemon holds the spool.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .events import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS parked (
    seq INTEGER PRIMARY KEY,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    body BLOB NOT NULL,
    parked_at INTEGER NOT NULL,
    reason TEXT NOT NULL
)
"""
_COLUMNS = "exchange, routing_key, message_id, type, timestamp, body"


@dataclass(frozen=True, slots=True)
class Parked:
    """One parked row: the message, when and why it was set aside."""

    seq: int
    message: Message
    parked_at: int
    reason: str


def park(db: sqlite3.Connection, seqs: list[int], reason: str) -> int:
    """Move spooled rows `seqs` into `parked` (one transaction); how many moved."""
    marks = ",".join("?" * len(seqs))
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(_SCHEMA)
        db.execute(
            f"INSERT INTO parked SELECT seq, {_COLUMNS}, ?, ? FROM events WHERE seq IN ({marks})",  # noqa: S608 - placeholders only
            (int(time.time()), reason, *seqs),
        )
        moved = db.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs).rowcount  # noqa: S608
    return moved


def count(db: sqlite3.Connection) -> int:
    """Rows parked."""
    db.execute(_SCHEMA)
    found: int = db.execute("SELECT count(*) FROM parked").fetchone()[0]
    return found


def retry(db: sqlite3.Connection) -> int:
    """Put every parked row back at the spool's tail (the drainer sends them again)."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(_SCHEMA)
        db.execute(
            f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM parked ORDER BY seq"  # noqa: S608
        )
        moved = db.execute("DELETE FROM parked").rowcount
    return moved


def rows(db: sqlite3.Connection, limit: int | None = None) -> list[Parked]:
    """Parked rows, oldest first."""
    try:
        cursor = db.execute(
            f"SELECT seq, {_COLUMNS}, parked_at, reason FROM parked ORDER BY seq LIMIT ?",  # noqa: S608
            (-1 if limit is None else limit,),
        )
    except sqlite3.OperationalError:  # no such table: nothing was ever parked
        return []
    return [
        Parked(seq, Message(ex, key, mid, kind, ts, bytes(body)), at, why)
        for seq, ex, key, mid, kind, ts, body, at, why in cursor
    ]


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a spool file (a running daemon may hold its lock)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
