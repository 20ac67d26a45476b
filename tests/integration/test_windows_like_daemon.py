"""The daemon, `tail` and `spool` on a Python like Windows' (no fcntl, no uvloop, no loop signal
handlers; tests/windows_like.py), against the real broker: serve, stop on Ctrl-C, lock the spool."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests import daemon
from tests.support import AMQP_URL, TEST_KEY, free_port, sample


def spool_stats(config: Path) -> subprocess.CompletedProcess[str]:
    """`od-bridge spool stats` on the Windows-like Python."""
    code = "import tests.windows_like, sys\nfrom bridge.cli import main\nsys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, "spool", "stats", "-c", str(config)],
        cwd=daemon.ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_serve_tail_and_spool_without_posix_only_calls(prefix: str, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
listen: {{host: 127.0.0.1, port: {port}, shutdown_grace_s: 0}}
amqp: {{url: "{AMQP_URL}", exchange_prefix: {prefix}}}
spool: {{enabled: true, path: "{tmp_path / "spool.sqlite3"}"}}
customers:
  - {{name: main-office, customer_key: {TEST_KEY}, timezone: America/Chicago}}
"""
    )
    bridge = await daemon.serve(config, windows_like=True)
    try:
        tail = await daemon.start(
            "tail", "-c", str(config), "--pretty", "--type", "Appointment",
            ready=b"tailing", windows_like=True,
        )  # fmt: skip
        try:
            delivery = sample("appointment")
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}/apievents",
                    data=json.dumps(delivery["body"]),
                    headers=delivery["headers"] | {"Authorization": TEST_KEY},
                ) as response,
            ):
                assert response.status == 200, await response.text()
            assert tail.stdout is not None
            line = await asyncio.wait_for(tail.stdout.readline(), 30)
            assert b"main-office  com.opendental.db.Appointment" in line
        finally:
            assert await daemon.stop(tail, signal.SIGTERM) == 0  # the plain-handler fallback
        refused = spool_stats(config)
        assert refused.returncode == 1
        assert "in use by another od-bridge process" in refused.stderr
    finally:
        assert await daemon.stop(bridge, signal.SIGINT) == 0  # Ctrl-C, as WinSW/NSSM send it
    stats = spool_stats(config)  # the daemon's lock went with it
    assert stats.returncode == 0, stats.stderr
    assert "rows waiting: 0" in stats.stdout
