"""The two ceilings, each run in its own process.

`http PORT`: a bare aiohttp handler that reads and parses the JSON body and answers 200.
`amqp`: bare aio-pika persistent, mandatory publishes with confirms, N in flight; prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aio_pika
import orjson
from aiohttp import web

from . import payloads


def run(coro: Any) -> Any:
    """Run on uvloop when installed (od-bridge `serve` does too)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def serve_app(handle: Any, port: int) -> None:
    """Serve `handle` on POST /apievents (and GET /readyz) on 127.0.0.1:`port` until killed."""

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/apievents", handle)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


async def http_server(port: int) -> None:
    """Serve until killed: POST anything → parse JSON → 200."""

    async def handle(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        rows = len(doc) if isinstance(doc, list) else 1
        return web.Response(body=b'{"accepted":%d}' % rows, content_type="application/json")

    await serve_app(handle, port)


async def amqp_publisher(args: argparse.Namespace) -> dict[str, Any]:
    """Publish a PatientSelected-sized CloudEvent, `in_flight` confirmed publishes at once."""
    connection = await aio_pika.connect(args.url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(args.exchange, ensure=True)
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "00000000-0000-0000-0000-000000000000",
            "source": "/opendental/bench",
            "type": "com.opendental.ui.PatientSelected",
            "data": payloads.PATIENT,
        }
    )
    stop_at = time.monotonic() + args.warmup + args.duration
    window = [time.monotonic() + args.warmup, stop_at]
    counted = 0
    failed = 0
    seq = 0

    async def worker() -> None:
        nonlocal counted, failed, seq
        while time.monotonic() < stop_at:
            seq += 1
            message = aio_pika.Message(
                body,
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"bench-{seq}",
                type="com.opendental.ui.PatientSelected",
                app_id="bench",
            )
            try:
                await exchange.publish(message, routing_key="bench.0.ws", mandatory=True)
            except Exception:
                failed += 1
                continue
            now = time.monotonic()
            if window[0] <= now <= window[1]:
                counted += 1

    await asyncio.gather(*(worker() for _ in range(args.in_flight)))
    await connection.close()
    return {
        "published": seq,
        "failed": failed,
        "seconds": args.duration,
        "msgs": counted,
        "rate": counted / args.duration,
        "in_flight": args.in_flight,
        "valid": failed == 0,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.ceilings")
    sub = p.add_subparsers(dest="which", required=True)
    h = sub.add_parser("http")
    h.add_argument("--port", type=int, required=True)
    a = sub.add_parser("amqp")
    a.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    a.add_argument("--exchange", required=True)
    a.add_argument("--in-flight", type=int, default=256)
    a.add_argument("--duration", type=float, default=10.0)
    a.add_argument("--warmup", type=float, default=2.0)
    parsed = p.parse_args()
    if parsed.which == "http":
        run(http_server(parsed.port))
    else:
        sys.stdout.write(orjson.dumps(run(amqp_publisher(parsed))).decode() + "\n")
