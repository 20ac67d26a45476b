"""`od-bridge spool stats|drain` against a real RabbitMQ: what an operator runs after an outage."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge import spoolcli
from bridge.errors import SpoolError
from bridge.events import Message, exchange_name
from bridge.spool import Spool
from tests.support import make_config

pytestmark = pytest.mark.integration


def _rows(exchange: str, count: int) -> list[Message]:
    return [
        Message(
            exchange=exchange,
            routing_key="main-office.appointment.ws1",
            message_id=f"spooled-{i}",
            type="com.opendental.db.Appointment",
            timestamp=1_795_000_000,
            body=b'{"n": %d}' % i + b" " * 1000,
        )
        for i in range(count)
    ]


def _file_size(stats: str) -> int:
    found = re.search(r"file size: (\d+) bytes", stats)
    assert found is not None
    return int(found.group(1))


async def test_stats_then_drain_publishes_in_order_and_gives_the_space_back(
    prefix: str,
    consume: Callable[[str], Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spool.sqlite3"
    config = make_config(prefix, spool={"enabled": True, "path": str(path)})
    exchange = exchange_name(prefix, "db", "Appointment")
    collector = await consume(exchange)
    rows = _rows(exchange, 1500)
    spool = Spool(path, 10_000)
    await spool.open()
    await spool.append(rows)  # what a daemon left behind when it stopped during an outage
    await spool.close()

    await asyncio.to_thread(spoolcli.run, config, "stats")
    stats = capsys.readouterr().out
    assert "rows waiting: 1500" in stats
    before = _file_size(stats)
    assert before > 1_500_000

    await asyncio.to_thread(spoolcli.run, config, "drain")
    assert capsys.readouterr().out == "drained 1500 of 1500 rows; 0 left\n"
    got = await collector.wait_for(1500)
    assert [m.message_id for m in got] == [m.message_id for m in rows]

    await asyncio.to_thread(spoolcli.run, config, "stats")
    stats = capsys.readouterr().out
    assert "rows waiting: 0" in stats
    after = _file_size(stats)
    assert after < 100_000  # the drained rows' space is given back


async def test_refused_while_a_daemon_holds_the_spool(prefix: str, tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    config = make_config(prefix, spool={"enabled": True, "path": str(path)})
    daemon = Spool(path, 10)
    await daemon.open()
    try:
        with pytest.raises(SpoolError, match="in use by another od-bridge process"):
            await asyncio.to_thread(spoolcli.run, config, "drain")
    finally:
        await daemon.close()


def test_parked_rows_are_listed_exported_and_put_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spool.sqlite3"
    config = make_config("p", spool={"enabled": True, "path": str(path)})
    rows = [
        Message("p.db.appointment", "k", f"id-{i}", "com.opendental.db.Appointment", 1, b"{}")
        for i in range(3)
    ]

    async def park_one() -> None:
        spool = Spool(path, 100)
        await spool.open()
        await spool.append(rows)
        [(seq, _)] = [r for r in await spool.peek(10) if r[1].message_id == "id-1"]
        await spool.park([seq], "returned by RabbitMQ (no route)")
        await spool.close()

    asyncio.run(park_one())
    assert spoolcli.run(config, "parked") == 0
    listed = capsys.readouterr().out
    assert "parked rows: 1" in listed and "id-1" in listed and "{}" not in listed  # no body
    assert spoolcli.run(config, "export") == 0
    [line] = capsys.readouterr().out.splitlines()
    assert '"message_id":"id-1"' in line and '"body":{}' in line
    assert spoolcli.run(config, "retry") == 0
    assert "1 parked rows put back" in capsys.readouterr().out
    assert spoolcli.run(config, "parked") == 0
    assert "parked rows: 0" in capsys.readouterr().out
