"""`od-bridge spool stats|drain|salvage`: what operators need after an outage or a damaged disk."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import orjson

from . import parking, spoolhealth
from .config import Config
from .errors import BridgeError, SpoolError
from .events import Message
from .metrics import Metrics
from .outbox import Drainer
from .publisher import AmqpPublisher
from .spool import Spool


async def _stats(spool: Spool) -> None:
    stats = await spool.stats()
    age = f"{time.time() - stats.oldest_timestamp:.0f} s" if stats.oldest_timestamp else "-"
    print(f"spool: {spool.path}")
    print(f"rows waiting: {stats.depth}")
    print(f"oldest row age: {age}")
    print(f"file size: {stats.file_bytes} bytes")


async def _drain(config: Config, spool: Spool) -> None:
    publisher = AmqpPublisher(config.amqp, role="spool drain")
    await publisher.start(wait=True)
    try:
        drainer = Drainer(spool, publisher, Metrics(), asyncio.Event())
        before = spool.size
        drained = await drainer.drain()
        print(f"drained {drained} of {before} rows; {spool.size} left")
        if spool.size:
            raise BridgeError(f"{spool.size} rows could not be published; they stay in the spool")
        try:
            await spool.shrink()  # as the daemon's drainer does: give the file's space back
        except SpoolError as exc:  # every row is published: the command still succeeded
            print(f"warning: {exc}", file=sys.stderr)
    finally:
        await publisher.close()


async def _salvage(spool: Spool, damaged: Path) -> None:
    """Copy every readable row of a damaged file into the spool; say what could not be read."""
    db = sqlite3.connect(damaged)  # read-write: SQLite replays the file's WAL, if any
    recovered = 0
    skipped: list[int] = []
    try:
        batch: list[Message] = []
        for _, row in spoolhealth.readable_rows(db, skipped=skipped):
            batch.append(Message(*row))
            if len(batch) == 1000:
                await spool.append(batch)
                recovered, batch = recovered + len(batch), []
        await spool.append(batch)
        recovered += len(batch)
        try:
            held: int | None = db.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.DatabaseError:
            held = None  # the count itself crosses a damaged page
    finally:
        db.close()
    print(f"salvaged {recovered} rows into {spool.path}")
    if held is not None:
        print(f"rows that could not be read: {held - recovered}")
    elif skipped:
        # Sequence numbers whose lookup failed: a bound, as some were deleted rows' numbers.
        span = f"sequence numbers {skipped[0]}-{skipped[-1]}"
        print(f"rows that could not be read: at most {len(skipped)} ({span})")
    else:
        print("rows that could not be read: unknown (the file cannot be counted)")


def _parked(path: Path, export: bool) -> None:
    """List (no bodies: they are PHI) or export (JSON lines) the parked rows, read-only."""
    if not path.is_file():
        raise BridgeError(f"no spool at {path}")
    db = parking.read_only(path)  # no lock: works while the daemon runs
    try:
        found = parking.rows(db)
    finally:
        db.close()
    if export:
        for row in found:
            m = row.message
            line = {"seq": row.seq, "parked_at": row.parked_at, "reason": row.reason,
                    "exchange": m.exchange, "routing_key": m.routing_key,
                    "message_id": m.message_id, "type": m.type, "timestamp": m.timestamp,
                    "body": orjson.loads(m.body)}  # fmt: skip
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        return
    print(f"parked rows: {len(found)}")
    for row in found:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.parked_at))
        m = row.message
        print(f"{row.seq}\t{when}\t{m.exchange}\t{m.routing_key}\t{m.message_id}\t{row.reason}")


async def _run(config: Config, action: str, file: Path | None) -> None:
    if not config.spool.enabled:
        raise BridgeError("the spool is disabled in this configuration (spool.enabled: false)")
    if action in ("parked", "export"):
        _parked(config.spool.path, export=action == "export")
        return
    if (action == "salvage") != (file is not None):
        raise BridgeError("a file is given to `spool salvage` (the set-aside copy) and only there")
    spool = Spool(config.spool.path, config.spool.max_events)
    await spool.open()  # takes the spool's lock: refuses while a daemon uses the same file
    try:
        if action == "stats":
            await _stats(spool)
        elif action == "salvage" and file is not None:
            await _salvage(spool, file)
        elif action == "retry":
            moved = await spool.retry_parked()
            print(
                f"{moved} parked rows put back in the spool; the daemon or 'spool drain' sends them"
            )
        else:
            await _drain(config, spool)
    finally:
        await spool.close()


def run(config: Config, action: str, file: Path | None = None) -> int:
    """Run one spool action; 0 on success."""
    if file is not None and not file.is_file():
        raise BridgeError(f"{file} is not a file")
    asyncio.run(_run(config, action, file))
    return 0
