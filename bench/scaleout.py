"""`python -m bench.scaleout`: one vs two bridge replicas on a private 3-node RabbitMQ cluster.

Each replica gets the three node URLs and its own closed-loop load generator (10-row Appointment
arrays, into a quorum queue). Reported per run: rows/s confirmed (every one answered 200) in
total and per replica, and CPU µs per row per replica (user + system time of the replica's
process over its load, divided by the rows it took). The cluster, the replicas and the load
generators share the machine's cores: with 2 cores two replicas cannot scale linearly, and the
broker's three nodes compete for the same cores; the per-row CPU cost is the figure that
transfers to bigger machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from bridge.events import exchange_name
from bridge.publisher import declare_event_exchange
from tests.rabbit_nodes import RabbitCluster  # the private-node rig of the test suite

from . import payloads
from .__main__ import RESULTS, cpu_seconds, free_port

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent


def config(tmp: Path, name: str, port: int, prefix: str, urls: list[str]) -> Path:
    """A replica's configuration: the cluster's URL list, no spool, no syncer."""
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"""
listen: {{host: 127.0.0.1, port: {port}, path: /apievents, shutdown_grace_s: 0}}
amqp: {{url: {json.dumps(urls)}, exchange_prefix: {prefix}, connection_name: {name}}}
spool: {{enabled: false}}
customers:
  - {{name: bench-office, customer_key: {payloads.KEY}, timezone: America/Chicago}}
sync: {{mode: "off"}}
log: {{level: WARNING}}
"""
    )
    return path


async def ready(port: int, limit: float = 60) -> None:
    """Wait until the replica's /readyz answers 200 (broker confirmed-ready)."""
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"replica on {port} not ready")


async def load(port: int, args: argparse.Namespace) -> dict[str, Any]:
    """One load generator process against one replica; its JSON report."""
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "bench.load", "--port", str(port), "--kind", "db", "--rows", "10",
        "--connections", str(args.connections), "--duration", str(args.duration),
        "--warmup", str(args.warmup), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    report: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return report


async def run(cluster: RabbitCluster, replicas: int, args: argparse.Namespace) -> dict[str, Any]:
    """`replicas` bridges, loaded at once; rows/s and CPU µs per row per replica."""
    prefix = f"so{uuid.uuid4().hex[:6]}"
    async with await aio_pika.connect(cluster.urls[0]) as connection:
        channel = await connection.channel()
        exchange = await declare_event_exchange(
            channel, prefix, exchange_name(prefix, "db", "Appointment")
        )
        queue = await channel.declare_queue(
            f"{prefix}.consumer", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="#")
    tmp = Path(tempfile.mkdtemp(prefix="od-bridge-scaleout-"))
    procs, ports = [], []
    try:
        for i in range(replicas):
            port = free_port()
            path = config(tmp, f"replica-{i}", port, prefix, cluster.urls)
            argv = [PY, "-m", "bridge", "serve", "-c", str(path)]
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=ROOT, stderr=asyncio.subprocess.DEVNULL
            )
            procs.append(proc)
            ports.append(port)
        await asyncio.gather(*(ready(p) for p in ports))
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        reports = await asyncio.gather(*(load(p, args) for p in ports))
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
        async with await aio_pika.connect(cluster.urls[1]) as connection:
            channel = await connection.channel()
            await channel.queue_delete(f"{prefix}.consumer")
            await channel.queue_delete(f"{prefix}.unrouted")
    per = []
    for report, seconds in zip(reports, cpu, strict=True):
        rows = report["ok"] * report["rows_per_request"]  # warmup included, as the CPU time is
        per.append(
            {
                "rows_per_s": round(report["rows_per_s"]),
                "cpu_us_per_row": round(seconds / max(rows, 1) * 1e6, 1),
                "p99_ms": round(report["latency_ms"]["p99"], 1),
                "valid": report["valid"],
            }
        )
    return {
        "replicas": replicas,
        "rows_per_s": sum(p["rows_per_s"] for p in per),
        "per_replica": per,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cluster = RabbitCluster(3)
    await asyncio.to_thread(cluster.start)
    try:
        runs = [await run(cluster, n, args) for n in (1, 2)]
    finally:
        await asyncio.to_thread(cluster.stop)
    return {
        "scenario": "scale-out on a 3-node RabbitMQ cluster (quorum queue), closed loop",
        "connections_per_replica": args.connections,
        "duration_s": args.duration,
        "runs": runs,
        "caveat": "2 shared cores run the 3 nodes, the replicas and the load generators: "
        "no linear scaling is possible here; the CPU µs per row is what transfers",
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.scaleout")
    p.add_argument("--connections", type=int, default=16, help="per replica")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    result = asyncio.run(main(parse_args()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaleout.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
