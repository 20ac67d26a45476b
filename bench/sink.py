"""Consumer (own process): drains the bench queue; in stamp mode records receive times.

Reads commands on stdin: `drain N TIMEOUT` waits until N messages arrived (or TIMEOUT seconds
pass with nothing new), then prints a JSON report and exits. Acks (every 256 messages, or
when idle) so that a dropped connection on the shared broker redelivers instead of losing what
was in flight; it then reconnects and goes on (redeliveries are counted apart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import aiormq
import aiormq.abc
import orjson

from bridge.publisher import BROKER_ERRORS


class Sink:
    """Counts deliveries; remembers the first receive time of each PatNum in stamp mode."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.count = 0
        self.redelivered = 0
        self.reconnects = 0
        self.last = time.monotonic()
        self.stamps: dict[int, float] = {}
        self.stamp = args.stamps_out != ""
        self.channel: aiormq.abc.AbstractChannel | None = None
        self.unacked = 0
        self.last_tag = 0

    async def on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        now = time.monotonic()
        self.last = now
        delivery = message.delivery
        assert isinstance(delivery, aiormq.spec.Basic.Deliver)  # a consumer gets only these
        if delivery.redelivered:
            self.redelivered += 1
        else:
            self.count += 1
        if self.stamp:
            doc = orjson.loads(message.body)
            data = doc.get("data", doc) if isinstance(doc, dict) else {}
            pat = data.get("PatNum") if isinstance(data, dict) else None
            if isinstance(pat, int) and pat not in self.stamps:
                self.stamps[pat] = now
        self.last_tag = delivery.delivery_tag or 0
        self.unacked += 1
        if self.unacked >= 256 and message.channel is not None:
            self.unacked = 0
            await message.channel.basic_ack(self.last_tag, multiple=True)

    async def connect(self) -> aiormq.abc.AbstractConnection:
        for attempt in range(80):  # the shared broker may refuse for a moment
            try:
                connection = await aiormq.connect(self.args.url)
                channel = await connection.channel()
                await channel.basic_qos(prefetch_count=2048)
                await channel.basic_consume(self.args.queue, self.on_message, no_ack=False)
                self.channel, self.unacked = channel, 0
                return connection
            except BROKER_ERRORS:
                if attempt == 79:
                    raise
                await asyncio.sleep(0.25)
        raise RuntimeError("unreachable")

    async def keep(self, stop: asyncio.Event) -> None:
        """Stay connected until stopped; ack the tail when idle."""
        connection = await self.connect()
        self.ready.set()
        while not stop.is_set():
            if connection.is_closed:
                self.reconnects += 1
                connection = await self.connect()
            elif self.unacked and time.monotonic() - self.last > 0.05 and self.channel:
                self.unacked = 0
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                    await self.channel.basic_ack(self.last_tag, multiple=True)
            await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await connection.close()

    async def main(self) -> dict[str, Any]:
        self.ready = asyncio.Event()
        stop = asyncio.Event()
        keeper = asyncio.create_task(self.keep(stop))
        await self.ready.wait()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        parts = line.split()
        want = int(parts[1]) if len(parts) > 1 else 0
        idle = float(parts[2]) if len(parts) > 2 else 5.0
        while self.count < want and time.monotonic() - self.last < idle:
            await asyncio.sleep(0.05)
        stop.set()
        await keeper
        if self.stamp:
            with open(self.args.stamps_out, "wb") as fh:
                fh.write(orjson.dumps({str(k): v for k, v in self.stamps.items()}))
        return {
            "received": self.count,
            "redelivered": self.redelivered,
            "reconnects": self.reconnects,
            "wanted": want,
        }


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.sink")
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--queue", required=True)
    p.add_argument("--stamps-out", default="")
    parsed = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(Sink(parsed).main())
    except ImportError:
        result = asyncio.run(Sink(parsed).main())
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
