"""A real bridge and RabbitMQ: every row answered 200 arrives though the spool file was removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.service import Service
from bridge.spool import Spool
from tests.integration.faults import Consumer, Ledger, client, fault_config, load, report
from tests.support import AMQP_URL, free_port

pytestmark = pytest.mark.integration


async def recreated(spool: Spool, timeout: float = 10) -> None:
    """Await the spool's own watch replacing its removed file (within a second or two)."""

    async def wait() -> None:
        while not spool.recreated:
            spool.watched.clear()
            await spool.watched.wait()

    await asyncio.wait_for(wait(), timeout)


async def test_rows_answered_200_survive_the_spool_file_being_removed(
    prefix: str, tmp_path: Path
) -> None:
    # Before: 200s went on into the unlinked file and after a restart 143,273 rows answered
    # 200 never arrived. Here the broker is away while the file is removed (nothing listens
    # on the AMQP port), so every row is only in the spool; then a restart with the broker.
    path = tmp_path / "var" / "spool.sqlite3"
    ledger = Ledger()
    away = Service(fault_config(prefix, f"amqp://guest:guest@127.0.0.1:{free_port()}/", path))
    await away.start()
    try:
        url = f"http://127.0.0.1:{away.port}/apievents"
        await load(url, ledger, clients=2, requests=10)
        before = len(ledger.acked)
        assert before == 100
        for leftover in path.parent.iterdir():  # `rm -rf var/*` under the running bridge
            leftover.unlink()
        assert away.spool is not None
        await recreated(away.spool)
        await asyncio.gather(*(client(url, ledger, n, requests=10, rows=5) for n in (3, 4)))
        assert len(ledger.acked) == 200
    finally:
        await away.stop()

    consumer = Consumer(prefix, ledger, AMQP_URL)
    await consumer.start()
    back = Service(fault_config(prefix, AMQP_URL, path))
    try:
        await back.start()
        await ledger.all_arrived()
    finally:
        await back.stop()
        await consumer.stop()
    report("spool removed", ledger)
    assert not ledger.missing()
