"""The naive bridge (own process): parse, publish each row with aio-pika, await its confirm, 200.

Same guarantees as od-bridge's core promise (persistent, mandatory, confirmed before 200) and
nothing else: no normalization, no envelope, no ids, no metrics.
"""

from __future__ import annotations

import argparse
import uuid

import aio_pika
import orjson
from aiohttp import web

from .ceilings import run, serve_app


async def serve(args: argparse.Namespace) -> None:
    """Serve until killed."""
    connection = await aio_pika.connect(args.url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchanges = {
        "ui": await channel.get_exchange(f"{args.prefix}.ui.patientselected", ensure=True),
        "db": await channel.get_exchange(f"{args.prefix}.db.appointment", ensure=True),
    }

    async def handle(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        rows = doc if isinstance(doc, list) else [doc]
        kind = "ui" if request.headers.get("Event-Type", "").startswith("Ui") else "db"
        workstation = request.headers.get("Workstation", "_")
        try:
            for row in rows:
                await exchanges[kind].publish(
                    aio_pika.Message(
                        orjson.dumps(row),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=str(uuid.uuid4()),
                    ),
                    routing_key=f"naive.{row.get('ClinicNum', 0)}.{workstation}",
                    mandatory=True,
                )
        except Exception:
            return web.json_response({"error": "not confirmed"}, status=503)
        return web.json_response({"accepted": len(rows)})

    await serve_app(handle, args.port)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.naive")
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--prefix", required=True)
    p.add_argument("--port", type=int, required=True)
    run(serve(p.parse_args()))
