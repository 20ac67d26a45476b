"""Durability bench: spool write throughput, confirmed-publish ceiling, drain after an outage.

    python -m bench.durability [--outage 60 | --quick] [--messages 50000]

Everything is measured in the same run, against the broker at --amqp (default the local one),
with a unique exchange prefix that is deleted afterwards. Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import aiormq
import orjson

from bridge import normalize
from bridge.events import Message, encode, exchange_name
from bridge.opendental import KNOWN_TABLES, table
from bridge.publisher import declare_event_exchange
from bridge.spool import Spool, file_bytes
from tests.support import amqp_properties  # the bridge's properties, for the bare ceiling

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = ROOT / "tests" / "fixtures" / "samples"
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
KEY = "VzkmZEaUWOjnQX2z"  # Open Dental's public test key
APPOINTMENT = orjson.loads((SAMPLES / "appointment.json").read_bytes())["body"][0]
HEADERS = {
    "Authorization": KEY,
    "Event-Type": "WatchTable: Appointment",
    "Workstation": "OD-SERVER",
    "Content-Type": "application/json",
}


# --- realistic rows and messages -----------------------------------------------------------
def rows(first: int, count: int) -> list[dict[str, Any]]:
    """`count` Appointment rows (the sample row) numbered first.. by AptNum: distinct ids."""
    return [{**APPOINTMENT, "AptNum": n} for n in range(first, first + count)]


def messages(prefix: str, first: int, count: int) -> list[Message]:
    """The AMQP messages the bridge would publish for those rows (same encoder)."""
    from zoneinfo import ZoneInfo

    ctx = normalize.Context(customer="main-office", zone=ZoneInfo("America/Chicago"))
    events = normalize.events(ctx, table("db", "Appointment"), "OD-SERVER", rows(first, count), 0.0)
    return [encode(e, prefix) for e in events]


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- broker helpers ------------------------------------------------------------------------
async def declare_sink(prefix: str, queue: str, url: str = AMQP_URL) -> None:
    """The appointment exchange (as the bridge declares it) bound to a durable queue."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        ex = await declare_event_exchange(
            channel, prefix, exchange_name(prefix, "db", "Appointment")
        )
        q = await channel.declare_queue(queue, durable=True)
        await q.bind(ex, "#")


async def cleanup(prefix: str, queues: Sequence[str]) -> None:
    """Delete every exchange and queue a bench run (or the bridge it ran) declared."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in [*queues, f"{prefix}.unrouted"]:
            await channel.queue_delete(name)
        names = [exchange_name(prefix, t.kind, t.name) for t in KNOWN_TABLES]
        names += [exchange_name(prefix, k, "Unknown") for k in ("db", "ui")]
        for name in [*names, f"{prefix}.unrouted", f"{prefix}.ceiling"]:
            await channel.exchange_delete(name)


async def count_queue(queue: str, expected: set[int], limit_s: float = 900) -> dict[str, int]:
    """Consume a queue until idle; how many of `expected` AptNums arrived, and duplicates."""
    seen: set[int] = set()
    deliveries = 0
    remaining = len(expected)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        q = await channel.declare_queue(queue, durable=True, passive=True)
        queued = q.declaration_result.message_count
        stop_at = time.monotonic() + limit_s
        async with q.iterator() as it:
            while time.monotonic() < stop_at:
                try:
                    message = await asyncio.wait_for(it.__anext__(), 3.0)
                except TimeoutError:
                    break  # idle for 3 s: everything queued has been read
                deliveries += 1
                apt = orjson.loads(message.body)["data"]["AptNum"]
                if apt not in seen:
                    seen.add(apt)
                    remaining -= apt in expected
                if deliveries % 500 == 0 or remaining == 0:
                    await message.ack(multiple=True)
                if remaining == 0:
                    break
    return {
        "queued_before_reading": queued or 0,
        "arrived": len(seen & expected),
        "missing": len(expected - seen),
        "duplicates": deliveries - len(seen),
    }


# --- 1. the bare confirmed-publish ceiling -------------------------------------------------
async def ceiling(url: str, prefix: str, count: int, in_flight: int = 256) -> dict[str, Any]:
    """aiormq persistent publishes with confirms, `in_flight` at once, to a bound queue."""
    batch = messages(prefix, 1, 1000)
    exchange, queue = f"{prefix}.ceiling", f"{prefix}.ceiling"
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        await channel.queue_declare(queue, durable=True)
        await channel.queue_bind(queue, exchange, routing_key="#")
        window = asyncio.Semaphore(in_flight)
        props = [amqp_properties(m) for m in batch]

        async def one(i: int) -> None:
            message = batch[i % len(batch)]
            async with window:
                await channel.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=message.routing_key,
                    properties=props[i % len(batch)],
                    mandatory=True,
                )

        # Warm-up (connection, queue process, page cache), then the timed run.
        await asyncio.gather(*(one(i) for i in range(min(2000, count))))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
        await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()
    return {
        "messages": count,
        "in_flight": in_flight,
        "body_bytes": len(batch[0].body),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(count / elapsed),
    }


# --- 2. spool write throughput -------------------------------------------------------------
async def spool_writes(directory: Path, seconds: float) -> dict[str, Any]:
    """Spool.append: one writer (1 row each) vs 64 concurrent writers of 1, 10 and 100 rows."""
    pool = messages("bench", 1, 100)
    out: dict[str, Any] = {}

    async def run(name: str, writers: int, per_request: int) -> None:
        spool = Spool(directory / f"{name}.sqlite3", max_events=100_000_000)
        await spool.open()
        done = 0
        stop_at = time.perf_counter() + seconds

        async def writer() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await spool.append(pool[:per_request])
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - started
        await spool.close()
        rows_written = done * per_request
        out[name] = {
            "writers": writers,
            "rows_per_request": per_request,
            "requests_per_s": round(done / elapsed),
            "rows_per_s": round(rows_written / elapsed),
            "commits": spool.commits,
            "rows_per_commit": round(rows_written / max(spool.commits, 1), 1),
            "ms_per_commit": round(elapsed * 1000 / max(spool.commits, 1), 2),
        }
        print(f"  spool {name}: {out[name]}", flush=True)

    await run("single_1", 1, 1)
    await run("single_100", 1, 100)
    for n in (1, 10, 100):
        await run(f"concurrent64_{n}", 64, n)
    return out


# --- 3. drain after an outage --------------------------------------------------------------
def bridge_yaml(prefix: str, amqp_url: str, port: int, spool: Path) -> str:
    """A bridge config: defaults for every deadline; spool enabled at `spool`."""
    return f"""
listen: {{host: 127.0.0.1, port: {port}, max_concurrent_requests: 4096}}
amqp: {{url: "{amqp_url}", exchange_prefix: {prefix}}}
spool: {{enabled: true, path: "{spool}", max_events: 100000000}}
customers:
  - {{name: main-office, customer_key: {KEY}, timezone: America/Chicago}}
sync: {{mode: "off"}}
log: {{level: WARNING, format: text}}
"""


@contextlib.asynccontextmanager
async def bridge_process(
    prefix: str, amqp_url: str, workdir: Path
) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m bridge serve` in its own process; yields (process, port) once it listens."""
    port = free_port()
    config = workdir / "bridge.yaml"
    config.write_text(bridge_yaml(prefix, amqp_url, port, workdir / "spool.sqlite3"))
    log = (workdir / "bridge.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                if proc.poll() is not None:
                    raise RuntimeError(f"bridge exited: {(workdir / 'bridge.log').read_text()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def readyz(session: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    """The bridge's /readyz document (ready, broker, spool depth)."""
    async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
        doc: dict[str, Any] = await r.json(content_type=None)
        return doc


async def http_load(
    port: int, seconds: float, concurrency: int, per_request: int, counter: itertools.count[int]
) -> dict[str, Any]:
    """Closed loop: `concurrency` senders of `per_request` rows for `seconds`; rows acked."""
    url = f"http://127.0.0.1:{port}/apievents"
    acked: set[int] = set()
    answers: dict[int, int] = {}
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            while time.monotonic() < stop_at:
                first = next(counter)
                ids = range(first * per_request, (first + 1) * per_request)
                body = orjson.dumps(rows(ids[0], per_request))
                try:
                    async with session.post(url, data=body, headers=HEADERS) as r:
                        status = r.status
                        await r.read()
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                answers[status] = answers.get(status, 0) + 1
                if status == 200:
                    acked.update(ids)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "seconds": round(elapsed, 2),
        "answers": answers,
        "rows_acked": len(acked),
        "rows_per_s": round(len(acked) / elapsed),
        "acked": acked,
    }


async def drain_after_outage(
    prefix: str, outage_s: float, concurrency: int, per_request: int
) -> dict[str, Any]:
    """Bridge behind a refusing proxy for `outage_s` under HTTP load, then heal; time the drain."""
    sys.path.insert(0, str(ROOT))
    from tests.proxy import Proxy

    queue = f"{prefix}.drain"
    await declare_sink(prefix, queue)
    broker = urlsplit(AMQP_URL)
    proxy = Proxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    counter = itertools.count(1)
    with tempfile.TemporaryDirectory(prefix="od-bench-") as tmp:
        async with bridge_process(prefix, proxy.url, Path(tmp)) as (proc, port):
            async with aiohttp.ClientSession() as session:
                # Connected first, so the outage is a real loss of a live connection.
                for _ in range(100):
                    if (await readyz(session, port))["broker"] == "connected":
                        break
                    await asyncio.sleep(0.1)
                proxy.refusing = True
                proxy.cut()
                for _ in range(100):
                    if (await readyz(session, port))["broker"] != "connected":
                        break
                    await asyncio.sleep(0.05)
                print(f"  outage: {outage_s} s of HTTP load into the spool", flush=True)
                load = await http_load(port, outage_s, concurrency, per_request, counter)
                depth = (await readyz(session, port))["spool"]
                spool_path = Path(tmp) / "spool.sqlite3"
                file_at_peak = file_bytes(spool_path)
                print(
                    f"  outage over: {load['rows_acked']} rows acked "
                    f"({load['rows_per_s']}/s), spool {depth}, {file_at_peak >> 20} MiB",
                    flush=True,
                )
                healed = time.perf_counter()
                proxy.refusing = False
                timeline: list[tuple[float, int]] = []
                first_progress: float | None = None
                while True:
                    d = (await readyz(session, port))["spool"]
                    now = time.perf_counter()
                    timeline.append((round(now - healed, 3), d))
                    if first_progress is None and d < depth:
                        first_progress = now
                    if d == 0:
                        break
                    if now - healed > 600:
                        raise RuntimeError(f"spool not drained after 600 s: {d} left")
                    await asyncio.sleep(0.05)
                emptied = time.perf_counter()
                # The drainer gives the file's space back once it finds the spool empty.
                file_after = file_bytes(spool_path)
                while file_after > 1 << 20 and time.perf_counter() - emptied < 30:
                    await asyncio.sleep(0.05)
                    file_after = file_bytes(spool_path)
                shrunk_s = time.perf_counter() - emptied
            rss_kb = rss(proc.pid)
    await proxy.close()
    acked: set[int] = load.pop("acked")
    arrival = await count_queue(queue, acked)
    start = first_progress or healed
    # The drain window: from the first row leaving the spool to the spool at 0. The first
    # poll after progress began is at most one poll interval (50 ms) late: a bias toward
    # a slightly lower rate, never higher.
    drain_s = emptied - start
    return {
        "outage_s": outage_s,
        "http_load": load,
        "spool_depth_after_outage": depth,
        "reconnect_s": round(start - healed, 3),
        "drain_s": round(drain_s, 3),
        "drain_rows_per_s": round(depth / drain_s),
        "heal_to_empty_s": round(emptied - healed, 3),
        "bridge_rss_kb_at_end": rss_kb,
        "spool_file_bytes_at_peak": file_at_peak,
        "spool_file_bytes_after_drain": file_after,
        "spool_file_shrunk_after_s": round(shrunk_s, 2),
        "consumer": arrival,
        "timeline": timeline[:: max(1, len(timeline) // 60)],
    }


def rss(pid: int) -> int:
    """VmRSS of a process, in kB (0 if gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def others_running() -> list[str]:
    """Other benchmarks, or integration tests (they load the machine), on this machine."""
    out = subprocess.run(
        ["pgrep", "-af", "python -m bench|tests/integration"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    mine = {os.getpid(), os.getppid()}
    return [
        line
        for line in out.splitlines()
        if line
        and int(line.split()[0]) not in mine
        and "bench.soak" not in line
        and "bench.durability" not in line
    ]


async def wait_for_quiet(wait_max: float, poll_s: float = 30.0) -> None:
    """Wait (up to `wait_max` s) until no other benchmark or integration test runs."""
    waited = 0.0
    while others := others_running():
        if waited >= wait_max:
            raise SystemExit(f"others still running after {waited:.0f} s: {others}")
        print(f"waiting for: {[o[:100] for o in others]}", flush=True)
        await asyncio.sleep(poll_s)
        waited += poll_s


# --- main ----------------------------------------------------------------------------------
def run_and_save(
    name: str, job: Coroutine[Any, Any, dict[str, Any]]
) -> tuple[dict[str, Any], Path]:
    """Run a benchmark on uvloop (when installed); write its report to bench/results/."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    report = asyncio.run(job)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    return report, out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three measurements in order; return the report."""
    if not args.no_wait:
        await wait_for_quiet(args.wait_max)
    prefix = f"bench-dur-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "prefix": prefix,
    }
    try:
        if not args.skip_spool:
            print("spool write throughput", flush=True)
            with tempfile.TemporaryDirectory(prefix="od-bench-spool-") as tmp:
                report["spool_write"] = await spool_writes(Path(tmp), args.spool_seconds)
        print("confirmed-publish ceiling (before)", flush=True)
        report["ceiling_before"] = await ceiling(AMQP_URL, prefix, args.messages)
        print(f"  {report['ceiling_before']}", flush=True)
        # The bridge's own window is amqp.max_in_flight (1024): the ceiling at that window too,
        # so a drain above the 256-window ceiling is not mistaken for a measuring error.
        report["ceiling_window_1024"] = await ceiling(AMQP_URL, prefix, args.messages, 1024)
        print(f"  {report['ceiling_window_1024']}", flush=True)
        print("drain after an outage", flush=True)
        drain = await drain_after_outage(prefix, args.outage, args.concurrency, args.rows)
        report["drain"] = drain
        print("confirmed-publish ceiling (after)", flush=True)
        report["ceiling_after"] = await ceiling(AMQP_URL, prefix, args.messages)
        print(f"  {report['ceiling_after']}", flush=True)
        # The fair comparison: as many messages as the drain had to move, into a queue that
        # grows the same way (a broker slows as an unconsumed queue grows).
        depth = drain["spool_depth_after_outage"]
        print(f"confirmed-publish ceiling ({depth} messages, as many as drained)", flush=True)
        report["ceiling_same_count"] = await ceiling(AMQP_URL, prefix, depth)
        print(f"  {report['ceiling_same_count']}", flush=True)
        best = report["ceiling_same_count"]["msgs_per_s"]
        report["drain_vs_ceiling"] = round(drain["drain_rows_per_s"] / best, 3)
        report["drain_vs_ceiling_1024"] = round(
            drain["drain_rows_per_s"] / report["ceiling_window_1024"]["msgs_per_s"], 3
        )
        report["target_met"] = report["drain_vs_ceiling"] >= 0.8
        report["host"]["loadavg_at_end"] = os.getloadavg()
    finally:
        await cleanup(prefix, [f"{prefix}.drain", f"{prefix}.ceiling"])
    return report


def cli() -> None:
    """Parse flags, run, print a summary, write bench/results/durability-<time>.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.durability", description=__doc__)
    parser.add_argument("--outage", type=float, default=60.0, help="outage length, s")
    parser.add_argument("--quick", action="store_true", help="10-s outage, short spool runs")
    parser.add_argument("--messages", type=int, default=50_000, help="ceiling: messages")
    parser.add_argument("--spool-seconds", type=float, default=5.0, help="per spool case")
    parser.add_argument("--skip-spool", action="store_true")
    parser.add_argument("--concurrency", type=int, default=2, help="HTTP senders in the outage")
    parser.add_argument("--rows", type=int, default=10, help="rows per HTTP request")
    parser.add_argument("--no-wait", action="store_true", help="don't wait for other benches")
    parser.add_argument("--wait-max", type=float, default=1200.0)
    args = parser.parse_args()
    if args.quick:
        args.outage = 10.0
        args.spool_seconds = 2.0
        args.messages = min(args.messages, 20_000)
    report, out = run_and_save("durability", main(args))
    drain = report["drain"]
    print(
        json.dumps(
            {
                "ceiling_msgs_per_s": [
                    report["ceiling_before"]["msgs_per_s"],
                    report["ceiling_after"]["msgs_per_s"],
                ],
                "drain_rows_per_s": drain["drain_rows_per_s"],
                "ceiling_1024_msgs_per_s": report["ceiling_window_1024"]["msgs_per_s"],
                "ratio": report["drain_vs_ceiling"],
                "ratio_1024": report["drain_vs_ceiling_1024"],
                "spool_depth": drain["spool_depth_after_outage"],
                "spool_mib": [
                    drain["spool_file_bytes_at_peak"] >> 20,
                    drain["spool_file_bytes_after_drain"] >> 20,
                ],
                "consumer": drain["consumer"],
                "results": str(out),
            }
        )
    )


if __name__ == "__main__":
    cli()
