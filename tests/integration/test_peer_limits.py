"""The daemon as a process against greedy peers: memory per request, descriptors (issue 13)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support import AMQP_URL, TEST_KEY, free_port, sample

RSS_LIMIT_KB = 300 * 1024
AUTH = {"Authorization": TEST_KEY}


class Daemon:
    """`python -m bridge serve` in a subprocess, its stderr lines kept."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    async def follow(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self.changed.set()

    async def logged(self, text: str, timeout: float = 20.0) -> None:
        """Wait until a stderr line contains `text`."""

        async def until() -> None:
            while not any(text in line for line in self.lines):
                if self.process.returncode is not None:
                    raise AssertionError("bridge exited:\n" + "".join(self.lines[-5:]))
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)

    def peak_rss_kb(self) -> int:
        """The process's peak resident set (VmHWM) so far."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


Start = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Daemon] = []
    followers: list[asyncio.Task[None]] = []

    async def start(prefix: str, amqp_url: str, *, nofile: int | None = None) -> Daemon:
        port = free_port()
        config = tmp_path / f"bridge-{len(started)}.yaml"
        config.write_text(
            f"""
listen: {{host: 127.0.0.1, port: {port}, header_timeout_s: 60, shutdown_grace_s: 0}}
amqp: {{url: "{amqp_url}", exchange_prefix: {prefix}, retry_budget_s: 0.5}}
spool: {{enabled: false}}
customers:
  - {{name: main-office, customer_key: {TEST_KEY}, timezone: America/Chicago}}
sync: {{mode: "off"}}
"""
        )
        command = [sys.executable, "-m", "bridge", "serve", "-c", str(config)]
        if nofile is not None:
            prlimit = shutil.which("prlimit")
            assert prlimit is not None, "prlimit (util-linux) is needed for this test"
            command = [prlimit, f"--nofile={nofile}:{nofile}", "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        bridge = Daemon(process, port)
        started.append(bridge)
        followers.append(asyncio.create_task(bridge.follow()))
        await bridge.logged('"listening"')
        return bridge

    yield start
    for bridge in started:
        if bridge.process.returncode is None:
            bridge.process.terminate()
            await bridge.process.wait()
    await asyncio.gather(*followers, return_exceptions=True)


def closed_port_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


async def test_no_single_request_within_max_body_bytes_takes_300_mb(daemon: Start) -> None:
    # Before: one 3 MB body of 1,000,000 `{}` rows peaked at 642 MB RSS (and filled the spool).
    bridge = await daemon("rss", closed_port_url())  # 413s never reach a broker
    limit = 16 * 1024 * 1024  # listen.max_body_bytes' default
    row = orjson.dumps({f"Field{n}": f"value {n}" for n in range(100)})

    def array(item: bytes, count: int) -> bytes:
        return b"[" + b",".join([item] * count) + b"]"

    bodies = {
        "1,000,000 empty rows": array(b"{}", 1_000_000),
        "16 MB of one-key rows": array(b'{"a":1}', (limit - 2) // 8),
        "16 MB of strings": array(b'"a"', (limit - 2) // 4),
        "5,000 rows of 100 fields": array(row, 5000),
    }
    async with aiohttp.ClientSession() as session:
        for name, data in bodies.items():
            assert len(data) <= limit, name
            # as a stream: aiohttp warns (an error here) that a large bytes body blocks the loop
            body = io.BytesIO(data)
            async with session.post(f"{bridge.url}/apievents", data=body, headers=AUTH) as response:
                expected = 503 if name.startswith("5,000") else 413  # no broker: 503 for those
                assert response.status == expected, (name, await response.text())
            assert bridge.peak_rss_kb() < RSS_LIMIT_KB, (name, bridge.peak_rss_kb())


async def test_idle_connections_cannot_use_up_the_descriptors(daemon: Start, prefix: str) -> None:
    # Before: 1,100 idle connections exhausted 1,024 descriptors; /healthz and real POSTs failed
    # and nothing was logged. Here: 256 descriptors and 400 idle connections.
    bridge = await daemon(prefix, AMQP_URL, nofile=256)
    await bridge.logged("connected to broker")
    idle = [
        await asyncio.open_connection("127.0.0.1", int(bridge.url.rsplit(":", 1)[1]))
        for _ in range(400)
    ]
    try:
        await bridge.logged("connection limit reached")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{bridge.url}/healthz") as response:
                assert response.status == 200
            delivery = sample("appointment")
            async with session.post(
                f"{bridge.url}/apievents",
                data=orjson.dumps(delivery["body"]),
                headers={**delivery["headers"], **AUTH},
            ) as response:
                assert response.status == 200, await response.text()
        assert sum("connection limit reached" in line for line in bridge.lines) == 1
        assert not any("out of system resource" in line for line in bridge.lines)
    finally:
        for _, writer in idle:
            writer.close()
