"""Upgrades that drop nothing: after SIGTERM the daemon says it is not ready but still takes
POSTs for `listen.shutdown_grace_s`, then stops as before (a real daemon, the real broker)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.service import Service
from tests import daemon
from tests.support import AMQP_URL, TEST_KEY, free_port, make_config, sample


async def test_a_post_50_ms_after_sigterm_gets_200(
    prefix: str, tmp_path: Path, consume: Callable[..., Any]
) -> None:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    # A grace far longer than the test: a second SIGTERM ends it (and must, or the wait fails).
    config.write_text(
        f"""
listen: {{host: 127.0.0.1, port: {port}, shutdown_grace_s: 120}}
amqp: {{url: "{AMQP_URL}", exchange_prefix: {prefix}}}
spool: {{enabled: false}}
customers:
  - {{name: main-office, customer_key: {TEST_KEY}, timezone: America/Chicago}}
"""
    )
    collector = await consume(f"{prefix}.db.appointment")
    bridge = await daemon.serve(config)
    base = f"http://127.0.0.1:{port}"
    delivery = sample("appointment")
    try:
        bridge.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)  # the scenario itself: Open Dental's next POST, 50 ms later
        # A new connection each time, as a client that never saw this pod before.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.post(
                f"{base}/apievents",
                data=json.dumps(delivery["body"]),
                headers=delivery["headers"] | {"Authorization": TEST_KEY},
            ) as response:
                assert response.status == 200, await response.text()
            async with s.get(f"{base}/readyz") as ready:
                assert ready.status == 503
                assert (await ready.json())["reason"] == "shutting down"
            async with s.get(f"{base}/healthz") as alive:
                assert alive.status == 200  # not a liveness failure: no restart for this
        await collector.wait_for(2)  # both rows were published, not just answered
        assert await daemon.stop(bridge, signal.SIGTERM) == 0  # the second one ends the grace
    finally:
        if bridge.returncode is None:
            bridge.kill()
            await bridge.wait()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as s, s.get(f"{base}/healthz"):
            pass


async def test_grace_zero_stops_accepting_at_once() -> None:
    bridge = Service(make_config(listen={"shutdown_grace_s": 0}))
    never = asyncio.Event()
    await asyncio.wait_for(bridge.wind_down(never), 5)  # returns without waiting
    assert bridge.shutting_down
    assert bridge._readiness()["ready"] is False


async def test_answers_during_the_grace_close_their_connection(prefix: str) -> None:
    # A keep-alive client (a load balancer, Open Dental) is told to take its next request
    # elsewhere: each answer during the grace says `Connection: close` and the socket closes.
    bridge = Service(make_config(prefix, listen={"shutdown_grace_s": 120}))
    await bridge.start()
    leave = asyncio.Event()
    base = f"http://127.0.0.1:{bridge.port}"
    delivery = sample("appointment")
    try:
        async with aiohttp.ClientSession() as s:

            async def post() -> aiohttp.ClientResponse:
                async with s.post(
                    f"{base}/apievents",
                    data=json.dumps(delivery["body"]),
                    headers=delivery["headers"] | {"Authorization": TEST_KEY},
                ) as response:
                    await response.read()
                    return response

            before = await post()
            assert before.status == 200
            assert "Connection" not in before.headers  # HTTP/1.1 keep-alive
            grace = asyncio.create_task(bridge.wind_down(leave))
            await asyncio.sleep(0)  # one loop step: the task runs up to its wait
            assert bridge.shutting_down
            during = await post()
            assert during.status == 200
            assert during.headers["Connection"] == "close"
            assert during.connection is None  # released, not returned to the pool
            async with s.get(f"{base}/healthz") as alive:
                assert alive.headers["Connection"] == "close"
        leave.set()
        await asyncio.wait_for(grace, 5)
    finally:
        await bridge.stop()
