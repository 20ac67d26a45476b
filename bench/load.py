"""Load generator (own process): keep-alive HTTP/1.1 over raw asyncio protocols.

Closed loop: N connections, each sends its next request as soon as the answer arrives.
Open loop: requests are scheduled at a fixed rate; latency counts from the *scheduled* send time
(no coordinated omission); a request waits for a free connection when all are busy.
Every status is counted; any non-200 invalidates the run. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys
import time
from array import array
from typing import Any

import orjson

from . import payloads


def percentiles(values: Any) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of a sequence of seconds."""
    data = sorted(values)
    if not data:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return float(data[min(len(data) - 1, int(q * len(data)))]) * 1000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": float(data[-1]) * 1000}


def request_bytes(host: str, port: int, path: str, kind: str, body: bytes) -> bytes:
    """A complete keep-alive POST."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in payloads.headers(kind).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Conn(asyncio.Protocol):
    """One keep-alive connection; parses Content-Length framed responses."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.seq = -1
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, seq: int, at: float) -> None:
        self.seq, self.sent_at = seq, at
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                self.status = int(head[9:12])
                length = 0
                at = head.find(b"\r\ncontent-length:")
                if at >= 0:
                    stop = head.find(b"\r\n", at + 2)
                    length = int(head[at + 17 : stop if stop >= 0 else None])
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = None
            self.gen.done(self, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.gen.lost(self)


class Generator:
    """Drives the connections and records statuses and latencies."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors = 0
        self.sent = 0
        self.completed = 0
        self.in_flight = 0
        self.window_start = float("inf")
        self.window_end = float("inf")
        self.window_count = 0
        self.latencies = array("d")
        self.stopping = False
        self.idle: collections.deque[Conn] = collections.deque()
        self.backlog: collections.deque[tuple[int, float]] = collections.deque()
        self.conns: list[Conn] = []
        self.sched = array("d")  # open loop: scheduled send time per seq
        self.answered = array("d")  # open loop: answer time per seq
        self.ok_seq = bytearray()  # open loop: 1 when answered 200
        self.all_done = asyncio.get_running_loop().create_future()
        if args.mode == "closed":
            self.bodies = [
                request_bytes(
                    args.host,
                    args.port,
                    args.path,
                    args.kind,
                    payloads.body(args.kind, args.rows, i),
                )
                for i in range(args.distinct)
            ]

    def request(self, seq: int) -> bytes:
        if self.args.mode == "closed":
            return self.bodies[seq % len(self.bodies)]
        body = payloads.body(self.args.kind, self.args.rows, seq + self.args.seq_base)
        return request_bytes(self.args.host, self.args.port, self.args.path, self.args.kind, body)

    def fire(self, conn: Conn, seq: int, at: float) -> None:
        self.sent += 1
        self.in_flight += 1
        conn.send(self.request(seq), seq, at)

    def done(self, conn: Conn, status: int) -> None:
        now = time.monotonic()
        self.in_flight -= 1
        self.completed += 1
        self.statuses[status] += 1
        if self.args.mode == "open":
            self.answered[conn.seq] = now
            if status == 200:
                self.ok_seq[conn.seq] = 1
        elif self.window_start <= now <= self.window_end:
            # Throughput counts answers inside the window; latency those also sent inside it.
            self.window_count += 1
            if conn.sent_at >= self.window_start:
                self.latencies.append(now - conn.sent_at)
        self.next(conn)

    def next(self, conn: Conn) -> None:
        if self.args.mode == "closed":
            if not self.stopping and (self.args.total == 0 or self.sent < self.args.total):
                self.fire(conn, self.sent, time.monotonic())
            else:
                self.check_done()
        elif self.backlog:
            seq, at = self.backlog.popleft()
            self.fire(conn, seq, at)
        else:
            self.idle.append(conn)
            self.check_done()

    def check_done(self) -> None:
        finished = self.stopping or (self.args.total and self.sent >= self.args.total)
        if finished and self.in_flight == 0 and not self.backlog and not self.all_done.done():
            self.all_done.set_result(None)

    def lost(self, conn: Conn) -> None:
        if not self.all_done.done():
            self.errors += 1  # a connection dropped mid-run (e.g. a server crash or force_close)

    async def connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Conn(self), self.args.host, self.args.port)
        self.conns.append(conn)
        return conn

    async def run_closed(self) -> None:
        conns = [await self.connect() for _ in range(self.args.connections)]
        start = time.monotonic()
        self.window_start = start + self.args.warmup
        self.window_end = self.window_start + self.args.duration
        for conn in conns:
            if not self.args.total or self.sent < self.args.total:
                self.fire(conn, self.sent, time.monotonic())
        if self.args.total:
            await self.all_done
            self.window_end = time.monotonic()
            self.window_start = start
            self.window_count = self.completed
        else:
            await asyncio.sleep(self.window_end - time.monotonic())
            self.stopping = True
            self.check_done()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_done, 60)

    async def run_open(self) -> None:
        args = self.args
        total = int(args.rate * args.duration)
        self.sched = array("d", [0.0]) * total
        self.answered = array("d", [0.0]) * total
        self.ok_seq = bytearray(total)
        for _ in range(args.connections):
            self.idle.append(await self.connect())
        start = time.monotonic() + 0.05
        interval = 1.0 / args.rate
        seq = 0
        while seq < total:
            now = time.monotonic()
            while seq < total and start + seq * interval <= now:
                at = start + seq * interval
                self.sched[seq] = at
                if self.idle:
                    self.fire(self.idle.popleft(), seq, at)
                else:
                    self.backlog.append((seq, at))
                seq += 1
            if seq < total:
                await asyncio.sleep(max(0.0, start + seq * interval - time.monotonic()))
        self.stopping = True
        self.check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_done, 60)
        self.window_start, self.window_end = start, time.monotonic()
        self.window_count = self.completed
        self.latencies = array(
            "d", (self.answered[i] - self.sched[i] for i in range(total) if self.answered[i])
        )

    def report(self) -> dict[str, Any]:
        seconds = max(self.window_end - self.window_start, 1e-9)
        non200 = sum(n for s, n in self.statuses.items() if s != 200)
        out: dict[str, Any] = {
            "mode": self.args.mode,
            "connections": self.args.connections,
            "rows_per_request": self.args.rows if self.args.kind == "db" else 1,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non200": non200,
            "errors": self.errors + (self.sent - self.completed),
            "seconds": seconds,
            "requests": self.window_count,
            "rps": self.window_count / seconds,
            "latency_ms": percentiles(self.latencies),
        }
        out["rows_per_s"] = out["rps"] * out["rows_per_request"]
        out["valid"] = out["non200"] == 0 and out["errors"] == 0 and out["completed"] > 0
        return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    gen = Generator(args)
    if args.mode == "closed":
        await gen.run_closed()
    else:
        await gen.run_open()
    report = gen.report()
    if args.mode == "open" and args.stamps_out:
        with open(args.stamps_out, "wb") as fh:
            fh.write(
                orjson.dumps(
                    {
                        "seq_base": args.seq_base,
                        "sched": list(gen.sched),
                        "ok": list(gen.ok_seq),
                    }
                )
            )
    for conn in gen.conns:
        if conn.transport is not None:
            conn.transport.close()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.load")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/apievents")
    p.add_argument("--kind", choices=("ui", "db"), default="ui")
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--distinct", type=int, default=1024, help="distinct bodies (closed loop)")
    p.add_argument("--total", type=int, default=0, help="closed loop: stop after N requests")
    p.add_argument("--seq-base", type=int, default=1_000_000)
    p.add_argument("--stamps-out", default="")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop

        result = uvloop.run(main(parse_args()))
    except ImportError:
        result = asyncio.run(main(parse_args()))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
