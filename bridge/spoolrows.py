"""The spool's events table: its schema, and the SQL that reads rows, depth, age and size.

Run in the spool's own thread (Spool._run); the function names are those its errors give.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .events import Message

SCHEMA = """
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


def peek(db: sqlite3.Connection, limit: int) -> list[tuple[int, Message]]:
    """The oldest `limit` rows with their sequence numbers, oldest first."""
    cursor = db.execute(
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


def oldest(db: sqlite3.Connection) -> float | None:
    """When the oldest waiting row was accepted (Unix time), or None when empty."""
    # The first row by seq (rows are appended in order): one B-tree descent, where
    # min(timestamp) would read the whole table on every scrape during an outage.
    row = db.execute("SELECT timestamp FROM events ORDER BY seq LIMIT 1").fetchone()
    return float(row[0]) if row else None


def stats(db: sqlite3.Connection, path: Path) -> Stats:
    """Depth, age of the oldest row and file size."""
    depth, oldest = db.execute("SELECT count(*), min(timestamp) FROM events").fetchone()
    return Stats(depth=depth, oldest_timestamp=oldest, file_bytes=file_bytes(path))


def file_bytes(path: Path) -> int:
    """A spool's size on disk: the database file and its WAL (readable while a daemon runs)."""
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))
