"""`od-bridge spool stats|drain`: what operators need when the broker was away."""

from __future__ import annotations

import asyncio
import sys
import time

from .config import Config
from .errors import BridgeError, SpoolError
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
    publisher = AmqpPublisher(config.amqp, connection_name="od-bridge spool drain")
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


async def _run(config: Config, action: str) -> None:
    if not config.spool.enabled:
        raise BridgeError("the spool is disabled in this configuration (spool.enabled: false)")
    spool = Spool(config.spool.path, config.spool.max_events)
    await spool.open()  # takes the spool's lock: refuses while a daemon uses the same file
    try:
        if action == "stats":
            await _stats(spool)
        else:
            await _drain(config, spool)
    finally:
        await spool.close()


def run(config: Config, action: str) -> int:
    """Run one spool action; 0 on success."""
    asyncio.run(_run(config, action))
    return 0
