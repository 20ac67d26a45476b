"""A downstream consumer: keeps `appointment` and `patient` tables in PostgreSQL up to date.

    pip install aio-pika cloudevents jsonschema "psycopg[binary]"
    PG_DSN=postgresql://postgres@127.0.0.1:5432/test python examples/postgres_sink.py

Each event is applied in one transaction together with its id in `handled_events`, so a
redelivered or resent event changes nothing. A row state older than the one stored (by its
change column) is ignored, and a deleted appointment leaves a tombstone, so an old state that
arrives after the deletion does not bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from datetime import datetime
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from examples.consumer import Options, Poison, consume

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.handled_events (
    event_id uuid PRIMARY KEY, handled_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {s}.appointment (
    aptnum bigint PRIMARY KEY, patnum bigint, aptstatus text, aptdatetime timestamptz,
    clinicnum bigint, datetstamp timestamptz NOT NULL, data jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.appointment_deleted (
    aptnum bigint PRIMARY KEY, deleted_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.patient (
    patnum bigint PRIMARY KEY, lname text, fname text, birthdate date,
    datetstamp timestamptz NOT NULL, data jsonb NOT NULL);
"""
# Upserts keep the newer state: `WHERE stored.datetstamp < new` makes an older one a no-op.
_UPSERT_APPOINTMENT = """
INSERT INTO {s}.appointment AS a (aptnum, patnum, aptstatus, aptdatetime, clinicnum, datetstamp,
    data)
SELECT %(key)s::bigint, %(patnum)s::bigint, %(aptstatus)s::text, %(aptdatetime)s::timestamptz,
    %(clinicnum)s::bigint, %(stamp)s::timestamptz, %(data)s::jsonb
WHERE NOT EXISTS (SELECT 1 FROM {s}.appointment_deleted d
                  WHERE d.aptnum = %(key)s AND d.deleted_at >= %(stamp)s)
ON CONFLICT (aptnum) DO UPDATE SET patnum = EXCLUDED.patnum, aptstatus = EXCLUDED.aptstatus,
    aptdatetime = EXCLUDED.aptdatetime, clinicnum = EXCLUDED.clinicnum,
    datetstamp = EXCLUDED.datetstamp, data = EXCLUDED.data
WHERE a.datetstamp < EXCLUDED.datetstamp
"""
_DELETE_APPOINTMENT = """
WITH tomb AS (
    INSERT INTO {s}.appointment_deleted (aptnum, deleted_at) VALUES (%(key)s, %(stamp)s)
    ON CONFLICT (aptnum) DO UPDATE SET deleted_at = GREATEST(
        {s}.appointment_deleted.deleted_at, EXCLUDED.deleted_at))
DELETE FROM {s}.appointment WHERE aptnum = %(key)s AND datetstamp <= %(stamp)s
"""
_UPSERT_PATIENT = """
INSERT INTO {s}.patient AS p (patnum, lname, fname, birthdate, datetstamp, data)
VALUES (%(key)s, %(lname)s, %(fname)s, %(birthdate)s::date, %(stamp)s, %(data)s)
ON CONFLICT (patnum) DO UPDATE SET lname = EXCLUDED.lname, fname = EXCLUDED.fname,
    birthdate = EXCLUDED.birthdate, datetstamp = EXCLUDED.datetstamp, data = EXCLUDED.data
WHERE p.datetstamp < EXCLUDED.datetstamp
"""
# CloudEvents type → (statement, the change column compared, extra columns from `data`).
_STATEMENTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "com.opendental.db.Appointment": (
        _UPSERT_APPOINTMENT,
        "DateTStamp",
        {
            "patnum": "PatNum",
            "aptstatus": "AptStatus",
            "aptdatetime": "AptDateTime",
            "clinicnum": "ClinicNum",
        },
    ),
    # Delete by AptNum, as of the history row's stamp (the README's per-type table).
    "com.opendental.db.AppointmentDeleted": (_DELETE_APPOINTMENT, "HistDateTStamp", {}),
    "com.opendental.db.Patient": (
        _UPSERT_PATIENT,
        "DateTStamp",
        {"lname": "LName", "fname": "FName", "birthdate": "Birthdate"},
    ),
}
KEYS = {"Appointment": "AptNum", "AppointmentDeleted": "AptNum", "Patient": "PatNum"}


def options() -> Options:
    """The consumer options of a sink: no in-process dedupe (see below), else the defaults."""
    # Dedupe happens in the database, in the event's own transaction: it survives restarts and
    # is shared by every replica, so consumer.py's in-process LRU would only hide duplicates.
    return Options(seen=None)


class PostgresSink:
    """Applies Appointment, AppointmentDeleted and Patient events to tables in one schema."""

    def __init__(self, connection: AsyncConnection[Any], schema: str) -> None:
        self.connection = connection
        self.schema = sql.Identifier(schema)
        self.counts: Counter[str] = Counter()  # applied, stale, duplicate, deleted, ignored
        self.changed = asyncio.Event()  # set after every event, for whoever waits on counts

    @classmethod
    async def open(cls, dsn: str, schema: str) -> PostgresSink:
        """Connect and create the schema and tables if missing."""
        connection = await AsyncConnection.connect(dsn)
        sink = cls(connection, schema)
        async with connection.transaction():
            await connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sink.schema))
            await connection.execute(sql.SQL(_SCHEMA).format(s=sink.schema))
        return sink

    async def close(self) -> None:
        """Close the connection."""
        await self.connection.close()

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self.changed.set()

    async def handle(self, event: BaseCloudEvent) -> None:
        """Apply one event, exactly once per event id (a consumer.Handler)."""
        statement = _STATEMENTS.get(event.get_type())
        if statement is None:
            self._count("ignored")  # another type on the same queue: nothing to keep
            return
        text, change_column, columns = statement
        data = event.get_data()
        if not isinstance(data, dict):
            raise Poison("data is not an object")
        params = _params(event, data, change_column, columns)
        async with self.connection.transaction():
            new = await self.connection.execute(
                sql.SQL(
                    "INSERT INTO {s}.handled_events (event_id) VALUES (%s) "
                    "ON CONFLICT DO NOTHING RETURNING event_id"
                ).format(s=self.schema),
                (event.get_id(),),
            )
            if await new.fetchone() is None:
                outcome = "duplicate"  # handled before (a resend, or a redelivery after a crash)
            else:
                done = await self.connection.execute(sql.SQL(text).format(s=self.schema), params)
                if change_column == "HistDateTStamp":
                    outcome = "deleted"  # the tombstone is recorded even if the row was not here
                else:
                    outcome = "applied" if done.rowcount else "stale"
        self._count(outcome)

    async def handled(self, total: int) -> None:
        """Return once `total` events were handled, whatever their outcome."""
        while self.counts.total() < total:
            self.changed.clear()
            await self.changed.wait()


def _params(
    event: BaseCloudEvent, data: dict[str, Any], change_column: str, columns: dict[str, str]
) -> dict[str, Any]:
    """Statement parameters from the event's data; a missing key or stamp is poison."""
    key_column = KEYS[event.get_type().rsplit(".", 1)[1]]
    try:
        key = int(data[key_column])
        stamp = datetime.fromisoformat(data[change_column])
    except (KeyError, TypeError, ValueError):
        raise Poison(f"no usable {key_column} or {change_column}") from None
    params: dict[str, Any] = {"key": key, "stamp": stamp, "data": Jsonb(data)}
    params.update({name: data.get(column) for name, column in columns.items()})
    return params


async def run(dsn: str, url: str, schema: str, queue: str, customer: str) -> None:
    """Consume one customer's appointments and patients into `schema` until cancelled."""
    sink = await PostgresSink.open(dsn, schema)
    binding = f"{customer}.#"
    bindings = [
        ("opendental.db.appointment", binding),
        ("opendental.db.appointmentdeleted", binding),
        ("opendental.db.patient", binding),
    ]
    try:
        await consume(url, queue, bindings, sink.handle, options())
    finally:
        await sink.close()


def main() -> None:
    """Run the sink for main-office until Ctrl-C."""
    dsn = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(dsn, url, "od_sink", "my-app.postgres-sink", "main-office"))


if __name__ == "__main__":
    main()
