"""Consumer (own process): drains the bench queue; in stamp mode records receive times.

Reads commands on stdin: `drain N TIMEOUT` waits until N messages arrived (or TIMEOUT seconds
pass with nothing new), then prints a JSON report and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiormq
import aiormq.abc
import orjson


async def main(args: argparse.Namespace) -> dict[str, Any]:
    # aiormq directly, no_ack: the consumer shares the 2 cores with the server under test,
    # so it should cost as little as possible per message.
    for attempt in range(40):  # the shared broker may refuse for a moment (others' fault tests)
        try:
            connection = await aiormq.connect(args.url)
            break
        except (OSError, aiormq.exceptions.AMQPError):
            if attempt == 39:
                raise
            await asyncio.sleep(0.25)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=5000)
    count = 0
    last = time.monotonic()
    stamps: dict[int, float] = {}
    stamp = args.stamps_out != ""
    loads = orjson.loads

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal count, last
        now = time.monotonic()
        count += 1
        last = now
        if stamp:
            doc = loads(message.body)
            data = doc.get("data", doc) if isinstance(doc, dict) else {}
            pat = data.get("PatNum") if isinstance(data, dict) else None
            if isinstance(pat, int) and pat not in stamps:
                stamps[pat] = now

    await channel.basic_consume(args.queue, on_message, no_ack=True)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    parts = line.split()
    want = int(parts[1]) if len(parts) > 1 else 0
    idle = float(parts[2]) if len(parts) > 2 else 5.0
    while count < want and time.monotonic() - last < idle:
        await asyncio.sleep(0.05)
    await connection.close()
    if stamp:
        with open(args.stamps_out, "wb") as fh:
            fh.write(orjson.dumps({str(k): v for k, v in stamps.items()}))
    return {"received": count, "wanted": want}


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.sink")
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--queue", required=True)
    p.add_argument("--stamps-out", default="")
    parsed = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(main(parsed))
    except ImportError:
        result = asyncio.run(main(parsed))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
