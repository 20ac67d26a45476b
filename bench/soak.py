"""Soak: the bridge at half of saturation for --minutes, a real broker restart in the middle.

    python -m bench.soak [--minutes 10] [--rate ROWS_PER_S] [--rows 5]

The bridge runs as `python -m bridge serve` in its own process (spool enabled, temp dir) against
a private RabbitMQ node that the soak starts and removes (the test suite's `tests.rabbit_nodes`):
the restart in the middle stops and boots that node, never the broker at AMQP_URL. Load: open
loop, Appointment arrays of --rows rows with distinct AptNums, at a fixed rate (default: half of
a closed-loop saturation probe run first). A consumer on a durable queue counts arrivals by
AptNum. Reports lost rows, duplicates, RSS drift, spool depth, latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from bench.durability import (
    HEADERS,
    bridge_process,
    declare_sink,
    http_load,
    readyz,
    rows,
    rss,
    run_and_save,
    wait_for_quiet,
)
from tests.rabbit_nodes import RabbitCluster, RabbitNode  # the private-node rig of the tests

# The soak's node holds a few hundred thousand rows at most: room for them, not the tests' 400 MB.
NODE_MEMORY = 2 * 2**30


class Arrivals:
    """A consumer on a durable queue over a robust connection: AptNums as they arrive."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.seen: Counter[int] = Counter()
        self.fresh: Counter[int] = Counter()  # deliveries not flagged `redelivered`
        self.redelivered = 0
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._last: aio_pika.abc.AbstractIncomingMessage | None = None
        self._unacked = 0
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and consume (manual acks, acknowledged in groups)."""
        self.connection = await aio_pika.connect_robust(self.url, reconnect_interval=1)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.declare_queue(self.queue, durable=True)
        await queue.consume(self._on_message)
        self._flusher = asyncio.create_task(self._flush_forever())

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        apt = orjson.loads(message.body)["data"]["AptNum"]
        self.seen[apt] += 1
        if message.redelivered:
            self.redelivered += 1  # the broker resending to us after the restart: not the bridge
        else:
            self.fresh[apt] += 1
        self._last = message
        self._unacked += 1
        if self._unacked >= 200:
            await self._ack()

    async def _ack(self) -> None:
        last, self._last, self._unacked = self._last, None, 0
        if last is not None:
            # A channel lost in the restart: its unacked deliveries come back as redeliveries.
            with contextlib.suppress(Exception):
                await last.ack(multiple=True)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._ack()

    async def stop(self) -> None:
        """Ack the rest and close."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._ack()
        if self.connection is not None:
            await self.connection.close()


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) in ms, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1)


async def soak(
    args: argparse.Namespace, node: RabbitNode, prefix: str, workdir: Path
) -> dict[str, Any]:
    """Probe, then the open-loop soak with a restart of the private node; the report."""
    queue = f"{prefix}.soak"
    await declare_sink(prefix, queue, node.url)
    arrivals = Arrivals(node.url, queue)
    await arrivals.start()
    counter = itertools.count(1)
    report: dict[str, Any] = {"rows_per_request": args.rows}
    try:
        async with bridge_process(prefix, node.url, workdir) as (proc, port):
            if args.rate:
                rate = args.rate
            else:
                probe = await http_load(port, args.probe, 64, args.rows, counter)
                probe.pop("acked")
                report["probe"] = probe
                rate = probe["rows_per_s"] / 2
                print(f"probe: {probe['rows_per_s']} rows/s; soak at {rate:.0f}", flush=True)
                await asyncio.sleep(3)  # let the probe's rows reach the consumer
            report["rate_rows_per_s"] = round(rate)
            report.update(await open_loop(args, node, port, proc.pid, rate, counter, arrivals))
    finally:
        await arrivals.stop()
    return report


async def open_loop(
    args: argparse.Namespace,
    node: RabbitNode,
    port: int,
    pid: int,
    rate: float,
    counter: itertools.count[int],
    arrivals: Arrivals,
) -> dict[str, Any]:
    """Requests at fixed times for the duration; broker restart in the middle; samples."""
    duration = args.minutes * 60
    warmup = min(60.0, duration / 4)
    interval = args.rows / rate
    url = f"http://127.0.0.1:{port}/apievents"
    acked: set[int] = set()
    sent_rows = 0
    answers: Counter[int] = Counter()
    latency: list[float] = []  # send → answer, 200s only
    lateness: list[float] = []  # scheduled time → answer (open-loop latency), 200s only
    samples: list[dict[str, Any]] = []
    events: dict[str, float] = {}
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()

        async def request(scheduled: float) -> None:
            first = next(counter) * args.rows
            ids = range(first, first + args.rows)
            body = orjson.dumps(rows(first, args.rows))
            sent = time.monotonic()
            try:
                async with session.post(url, data=body, headers=HEADERS) as r:
                    status = r.status
                    await r.read()
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            now = time.monotonic()
            answers[status] += 1
            if status == 200:
                acked.update(ids)
                latency.append(now - sent)
                lateness.append(now - scheduled)

        async def sampler() -> None:
            async with aiohttp.ClientSession() as probe:
                while True:
                    t = time.monotonic() - start
                    depth: Any = None
                    with contextlib.suppress(Exception):
                        depth = (await readyz(probe, port))["spool"]
                    samples.append(
                        {"t": round(t, 1), "rss_kb": rss(pid), "spool": depth, "open": len(tasks)}
                    )
                    await asyncio.sleep(args.sample_s)

        async def restart() -> None:
            await asyncio.sleep(duration / 2)
            events["broker_stop"] = time.monotonic() - start
            print(f"t={events['broker_stop']:.0f}s: stopping {node.name}", flush=True)
            await asyncio.to_thread(node.stop)
            await asyncio.sleep(args.down_s)
            events["broker_start"] = time.monotonic() - start
            print(f"t={events['broker_start']:.0f}s: starting {node.name}", flush=True)
            await asyncio.to_thread(node.start)
            events["broker_up"] = time.monotonic() - start

        side = [asyncio.create_task(sampler())]
        if not args.no_restart:
            side.append(asyncio.create_task(restart()))
        try:
            for i in itertools.count():
                scheduled = start + i * interval
                if scheduled - start >= duration:
                    break
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(request(scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent_rows += args.rows
            events["load_end"] = time.monotonic() - start
            await asyncio.gather(*list(tasks))
            events["answers_end"] = time.monotonic() - start
            rss_end_of_load = rss(pid)
            # The spool back to 0, then every acked row at the consumer.
            depth: Any = None
            for _ in range(1200):
                with contextlib.suppress(Exception):
                    depth = (await readyz(session, port))["spool"]
                if depth == 0:
                    break
                await asyncio.sleep(0.1)
            events["spool_empty"] = time.monotonic() - start
            for _ in range(1200):
                if not acked - arrivals.seen.keys():
                    break
                await asyncio.sleep(0.1)
            events["all_arrived"] = time.monotonic() - start
            await asyncio.sleep(2)  # late duplicates, if any
            rss_settled = rss(pid)
        finally:
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
    warm = next((s["rss_kb"] for s in samples if s["t"] >= warmup), samples[-1]["rss_kb"])
    end = max(rss_end_of_load, rss_settled)
    arrived_acked = len(acked & arrivals.seen.keys())
    return {
        "minutes": args.minutes,
        "rows_sent": sent_rows,
        "rows_200": len(acked),
        "answers": dict(answers),
        "non_200_requests": sum(n for status, n in answers.items() if status != 200),
        "rows_arrived": arrived_acked,
        "rows_arrived_incl_probe": len(arrivals.seen),
        "lost": len(acked) - arrived_acked,
        "duplicates": sum(arrivals.seen.values()) - len(arrivals.seen),
        # Copies the bridge itself published twice (a republish after an unconfirmed attempt),
        # as opposed to the broker redelivering to our consumer after the restart.
        "bridge_duplicates": sum(n - 1 for n in arrivals.fresh.values() if n > 1),
        "consumer_redeliveries": arrivals.redelivered,
        "rss_kb_warmup": warm,
        "warmup_s": warmup,
        "rss_kb_end_of_load": rss_end_of_load,
        "rss_kb_settled": rss_settled,
        "rss_ratio": round(end / warm, 3),
        "spool_depth_end": depth,
        "spool_max": max((s["spool"] or 0) for s in samples),
        "latency_ms": {"p50": percentile(latency, 50), "p99": percentile(latency, 99)},
        "open_loop_latency_ms": {
            "p50": percentile(lateness, 50),
            "p99": percentile(lateness, 99),
            "max": percentile(lateness, 100),
        },
        "events_s": {k: round(v, 1) for k, v in events.items()},
        "samples": samples,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Wait for a quiet machine, soak, clean up."""
    if not args.no_wait:
        await wait_for_quiet(args.wait_max)
    prefix = f"bench-soak-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "prefix": prefix,
        "host": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
    }
    cluster = RabbitCluster(1, memory_limit=NODE_MEMORY)
    await asyncio.to_thread(cluster.start)
    try:
        with tempfile.TemporaryDirectory(prefix="od-soak-") as tmp:
            report.update(await soak(args, cluster.nodes[0], prefix, Path(tmp)))
    finally:
        await asyncio.to_thread(cluster.stop)  # the node, its data and our queues with it
    report["host"]["loadavg_at_end"] = os.getloadavg()
    return report


def cli() -> None:
    """Parse flags, run, print the summary, write bench/results/soak-<time>.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=0.0, help="rows/s (default: probe / 2)")
    parser.add_argument("--rows", type=int, default=5, help="Appointment rows per request")
    parser.add_argument("--probe", type=float, default=15.0, help="saturation probe, s")
    parser.add_argument("--down-s", type=float, default=15.0, help="node stopped this long")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS/spool sample period")
    parser.add_argument("--no-restart", action="store_true")
    parser.add_argument("--no-wait", action="store_true", help="don't wait for other benches")
    parser.add_argument("--wait-max", type=float, default=1200.0)
    args = parser.parse_args()
    report, out = run_and_save("soak", main(args))
    summary = {k: v for k, v in report.items() if k not in ("samples",)}
    print(json.dumps(summary, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    cli()
