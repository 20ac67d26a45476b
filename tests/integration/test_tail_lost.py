"""`od-bridge tail` whose connection is lost ends with one clear sentence, not silence."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests import daemon
from tests.proxy import Proxy
from tests.support import TEST_KEY

pytestmark = pytest.mark.integration


async def test_a_lost_connection_ends_the_tail_with_one_sentence(
    prefix: str, proxy: Proxy, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
amqp: {{url: "{proxy.url}", exchange_prefix: {prefix}}}
customers:
  - {{name: main-office, customer_key: {TEST_KEY}, timezone: America/Chicago}}
"""
    )
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "tail", "-c", str(config), "--type", "Appointment",
        cwd=daemon.ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stderr is not None
    first = await asyncio.wait_for(tail.stderr.readline(), 30)
    assert b"tailing" in first  # consuming now
    proxy.cut()  # the broker side goes away
    rest = await asyncio.wait_for(tail.stderr.read(), 30)
    assert await tail.wait() == 1
    assert b"connection to RabbitMQ was lost" in rest
    assert b"Traceback" not in rest
