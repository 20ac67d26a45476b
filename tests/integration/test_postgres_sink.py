"""examples/postgres_sink.py end to end: emulator office → real bridge → RabbitMQ → PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aio_pika
import aiohttp
import orjson
import psycopg
import pytest
from psycopg import sql

from bridge import normalize
from bridge.cli import main
from bridge.config_loader import load
from bridge.emulator.app import DOC_CUSTOMER_KEY, Emulator, Settings
from bridge.opendental import DATETIME_FORMAT
from bridge.service import Service
from examples.consumer import consume
from examples.postgres_sink import PostgresSink
from examples.postgres_sink import options as sink_options
from tests.support import AMQP_URL, free_port, missing, office_config_text

pytestmark = pytest.mark.integration

PG_DSN = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 28, 8, 0, 0)
TABLES = ("Appointment", "AppointmentDeleted", "Patient")


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A unique PostgreSQL schema, dropped afterwards (fail under CI=true if no server)."""
    try:
        connection = await psycopg.AsyncConnection.connect(PG_DSN, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL is not reachable at {PG_DSN}: {exc}")
        raise  # missing() fails or skips; this line is never reached
    name = f"sink_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        async with connection:
            await connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )
            await connection.commit()


async def post(url: str, rows: list[dict[str, Any]], table: str) -> int:
    headers = {
        "Authorization": DOC_CUSTOMER_KEY,
        "Event-Type": f"WatchTable: {table}",
        "Workstation": "OD-SERVER",
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=orjson.dumps(rows), headers=headers) as response:
            await response.read()
            return response.status


async def stored(sink: PostgresSink, table: str, key: str) -> dict[int, Any]:
    query = sql.SQL("SELECT {}, data FROM {}.{}").format(
        sql.Identifier(key), sink.schema, sql.Identifier(table)
    )
    cursor = await sink.connection.execute(query)
    return {number: data for number, data in await cursor.fetchall()}


def final_state(emulator: Emulator, table: str) -> dict[int, Any]:
    """The office's current rows of `table`, as the bridge normalizes them (JSON round trip)."""
    ctx = normalize.Context("main-office", ZoneInfo("America/Chicago"))
    rows = emulator.office.rows.get(table, {})
    return {
        pk: orjson.loads(orjson.dumps(normalize.row_data(r, ctx))) for pk, (_, r) in rows.items()
    }


def acked(emulator: Emulator) -> int:
    by_table = emulator.stats()["by_table"]
    return sum(by_table.get(name, {}).get("acked", 0) for name in TABLES)


async def test_the_table_equals_the_offices_final_state(
    prefix: str, tmp_path: Path, pg_schema: str
) -> None:
    clock = [T0]

    def at(seconds: int) -> datetime:
        clock[0] = T0 + timedelta(seconds=seconds)
        return clock[0]

    emulator = Emulator(Settings(), clock=lambda: clock[0])
    port = free_port()
    queue = f"{prefix}.postgres-sink"
    async with emulator.serve() as base:
        config = tmp_path / "od-bridge.yaml"
        config.write_text(
            office_config_text(
                port=port,
                amqp_url=AMQP_URL,
                prefix=prefix,
                api_url=base,
                subscriptions=[
                    f"watch_table: {name}, polling_seconds: 30, workstation: OD-SERVER"
                    for name in TABLES
                ],
            )
        )
        # main() runs its own event loop: give it a thread while ours serves the emulator.
        assert await asyncio.to_thread(main, ["sync", "-c", str(config), "--apply"]) == 0
        service = Service(load(config, env={}))
        await service.start()
        sink = await PostgresSink.open(PG_DSN, pg_schema)
        options = replace(sink_options(), started=asyncio.Event(), backoff_s=0.01)
        bindings = [(f"{prefix}.db.{name.lower()}", "main-office.#") for name in TABLES]
        task = asyncio.create_task(consume(AMQP_URL, queue, bindings, sink.handle, options))
        try:
            await asyncio.wait_for(options.started.wait(), 10)
            # Three polling cycles of an office at work: new rows, edits, deletions.
            emulator.change_rows("Appointment", 80, now=at(5))
            emulator.change_rows("Patient", 30, now=at(6))
            assert await emulator.fire_once(now=at(60)) == 3
            emulator.change_rows("Appointment", 40, now=at(70))
            emulator.change_rows("Patient", 15, now=at(71))
            emulator.delete_rows("Appointment", 10, now=at(72))
            await emulator.fire_once(now=at(120))
            emulator.change_rows("Appointment", 20, now=at(130))
            emulator.delete_rows("Appointment", 5, now=at(131))
            await emulator.fire_once(now=at(180))
            events = acked(emulator)
            await asyncio.wait_for(sink.handled(events), 60)
            assert sink.counts["duplicate"] == sink.counts["stale"] == 0

            # A failed cycle: Open Dental resends everything since T0, the same row states.
            for sub in emulator.subs.items.values():
                sub["DateTimeStart"] = T0.strftime(DATETIME_FORMAT)
            await emulator.fire_once(now=at(240))
            duplicates = acked(emulator) - events
            await asyncio.wait_for(sink.handled(events + duplicates), 60)
            assert sink.counts["duplicate"] == duplicates > 0

            # Out of order: an older state of a live appointment after its newer one, and an
            # older state of a deleted appointment after its deletion. Neither may win.
            live_pk, (_, live) = next(iter(emulator.office.rows["Appointment"].items()))
            older = {**live, "AptStatus": "Broken", "DateTStamp": "2026-11-28 08:00:01"}
            deleted = next(iter(emulator.office.rows["AppointmentDeleted"].values()))[1]
            revived = {k: v for k, v in deleted.items() if k[:4] != "Hist" and k != "ApptSource"}
            revived["DateTStamp"] = "2026-11-28 08:00:02"
            url = f"http://127.0.0.1:{service.port}/apievents"
            assert await post(url, [older], "Appointment") == 200
            assert await post(url, [revived], "Appointment") == 200
            await asyncio.wait_for(sink.handled(events + duplicates + 2), 30)
            assert sink.counts["stale"] == 2

            appointments = await stored(sink, "appointment", "aptnum")
            assert appointments == final_state(emulator, "Appointment")  # row for row
            assert appointments[live_pk]["AptStatus"] == live["AptStatus"]
            assert deleted["AptNum"] not in appointments
            assert await stored(sink, "patient", "patnum") == final_state(emulator, "Patient")
            counts = dict(sink.counts)
            print(  # the figures for the closing note (pytest -s shows them)
                f"postgres sink: {events} events, {duplicates} duplicates, 2 out of order; "
                f"outcomes {counts}; {len(appointments)} appointments and "
                f"{len(final_state(emulator, 'Patient'))} patients equal the office's"
            )
            assert counts["deleted"] == 15 and options.dead_lettered == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sink.close()
            await service.stop()
            connection = await aio_pika.connect(AMQP_URL, timeout=10)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.queue_delete(f"{queue}.dlq")
