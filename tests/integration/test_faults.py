"""Faults injected into a running bridge: every row answered 200 arrives; order kept per sender."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.service import Service
from tests import daemon
from tests.integration.faults import (
    Consumer,
    Ledger,
    config_text,
    fault_config,
    load,
    report,
)
from tests.proxy import Proxy
from tests.rabbit_nodes import RabbitNode
from tests.support import AMQP_URL, assert_path, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(prefix: str) -> AsyncIterator[Ledger]:
    """Rows sent and received, counted by a consumer on the broker at AMQP_URL."""
    book = Ledger()
    consumer = Consumer(prefix, book, AMQP_URL)
    await consumer.start()
    yield book
    await consumer.stop()


@pytest.fixture
async def private_ledger(private_rabbit: RabbitNode) -> AsyncIterator[tuple[str, Ledger]]:
    """A unique prefix and its ledger on the private node (for faults of the broker itself)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    book = Ledger()
    consumer = Consumer(prefix, book, private_rabbit.url)
    await consumer.start()
    yield prefix, book
    await consumer.stop()


async def running(prefix: str, proxy: Proxy, tmp_path: Path, **kw: int) -> Service:
    service = Service(fault_config(prefix, proxy.url, tmp_path / "spool.sqlite3", **kw))
    await service.start()
    return service


def url(service: Service) -> str:
    return f"http://127.0.0.1:{service.port}/apievents"


def check(name: str, ledger: Ledger) -> None:
    report(name, ledger)
    assert not ledger.missing(), f"{len(ledger.missing())} rows answered 200 never arrived"
    assert not ledger.out_of_order(), "rows of one sender arrived out of order"


async def test_connections_cut_mid_stream(
    prefix: str, proxy: Proxy, ledger: Ledger, tmp_path: Path
) -> None:
    service = await running(prefix, proxy, tmp_path)
    try:
        traffic = asyncio.create_task(load(url(service), ledger))
        await ledger.answered(30)
        proxy.cut()
        await ledger.answered(60)
        proxy.cut()
        await traffic
        await ledger.all_arrived()
        assert service.drainer is not None
        await asyncio.wait_for(service.drainer.idle.wait(), 30)
    finally:
        await service.stop()
    check("cut", ledger)
    assert ledger.answers[200] == 160


async def test_new_connections_refused_for_a_while(
    prefix: str, proxy: Proxy, ledger: Ledger, tmp_path: Path
) -> None:
    service = await running(prefix, proxy, tmp_path)
    try:
        traffic = asyncio.create_task(load(url(service), ledger))
        await ledger.answered(20)
        proxy.refusing = True
        proxy.cut()
        await asyncio.wait_for(service.publisher.lost.wait(), 10)
        await ledger.answered(80)  # answered from the spool while the broker is unreachable
        assert service.spool is not None and service.spool.size > 0
        proxy.refusing = False
        await traffic
        await ledger.all_arrived()
    finally:
        await service.stop()
    check("refuse", ledger)


async def test_stalled_past_the_heartbeat(
    prefix: str, proxy: Proxy, ledger: Ledger, tmp_path: Path
) -> None:
    service = await running(prefix, proxy, tmp_path, heartbeat_s=1)
    try:
        traffic = asyncio.create_task(load(url(service), ledger))
        await ledger.answered(20)
        proxy.stall()
        await asyncio.wait_for(service.publisher.lost.wait(), 20)  # heartbeat gave up on it
        proxy.cut()  # the stalled sockets are dead to both ends now
        proxy.resume()
        await traffic
        await ledger.all_arrived()
    finally:
        await service.stop()
    check("stall", ledger)


async def test_broker_restart(
    private_rabbit: RabbitNode, private_ledger: tuple[str, Ledger], tmp_path: Path
) -> None:
    prefix, ledger = private_ledger
    service = Service(fault_config(prefix, private_rabbit.url, tmp_path / "s.db"))
    await service.start()
    try:
        traffic = asyncio.create_task(load(url(service), ledger))
        await ledger.answered(20)
        await asyncio.to_thread(private_rabbit.stop)
        try:
            await asyncio.wait_for(service.publisher.lost.wait(), 20)
            await ledger.answered(60)
        finally:
            await asyncio.to_thread(private_rabbit.start)
        await traffic
        await ledger.all_arrived(60)
    finally:
        await service.stop()
    check("broker restart", ledger)


async def test_memory_alarm_blocks_publishers(
    private_rabbit: RabbitNode,
    private_ledger: tuple[str, Ledger],
    tmp_path: Path,
    publish_path: str,
) -> None:
    # On both paths: the spool's 1000-row drains after the alarm are what found the public
    # path sending a batch's later rows before earlier ones whose deadline had passed.
    prefix, ledger = private_ledger
    service = Service(fault_config(prefix, private_rabbit.url, tmp_path / "spool.sqlite3"))
    await service.start()
    try:
        assert_path(service.publisher, publish_path)
        ledger.hold_at = 200  # under load rabbitmqctl can outlast all 400 requests
        traffic = asyncio.create_task(load(url(service), ledger, requests=400))
        await ledger.answered(20)
        await asyncio.to_thread(private_rabbit.ctl, "set_vm_memory_high_watermark", "0.0000001")
        ledger.go.set()  # the alarm is on: the rest of the load meets it
        try:
            # rabbitmqctl takes a while; count from when the alarm is surely on.
            await ledger.answered(sum(ledger.answers.values()) + 60)
            assert service.publisher.blocked
            assert service.spool is not None and service.spool.size > 0
        finally:
            limit = str(private_rabbit.cluster.memory_limit)
            await asyncio.to_thread(
                private_rabbit.ctl, "set_vm_memory_high_watermark", "absolute", limit
            )
        await traffic
        await ledger.all_arrived(60)
    finally:
        await service.stop()
    check("memory alarm", ledger)


async def test_spool_full_answers_503_and_loses_nothing(
    prefix: str, proxy: Proxy, ledger: Ledger, tmp_path: Path
) -> None:
    proxy.refusing = True
    service = await running(prefix, proxy, tmp_path, max_events=10)
    try:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for n in range(3):
                body = [
                    {"AptNum": 1_000_000 + n * 5 + i, "DateTStamp": "2026-11-28 08:00:00"}
                    for i in range(5)
                ]
                async with session.post(
                    url(service), json=body, headers={"Authorization": "VzkmZEaUWOjnQX2z"}
                ) as response:
                    statuses.append(response.status)
                    if response.status == 200:
                        ledger.acked.update(row["AptNum"] for row in body)
                    else:
                        assert int(response.headers["Retry-After"]) > 0
        assert statuses == [200, 200, 503]
        proxy.refusing = False
        await ledger.all_arrived()
    finally:
        await service.stop()
    check("spool full", ledger)


async def test_sigkill_after_200_loses_nothing(
    prefix: str, proxy: Proxy, ledger: Ledger, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    spool = f'{{enabled: true, path: "{tmp_path / "spool.sqlite3"}", max_events: 100000}}'
    config.write_text(config_text(prefix, proxy.url, spool, port, 2))
    proxy.refusing = True  # the broker is "down": every 200 comes from the spool
    process = await daemon.serve(config)
    try:
        await load(f"http://127.0.0.1:{port}/apievents", ledger, clients=3, requests=10)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert len(ledger.acked) == 150
    proxy.refusing = False
    process = await daemon.serve(config)  # drains what the killed one left
    try:
        await ledger.all_arrived()
    finally:
        process.terminate()
        await process.wait()
    check("sigkill", ledger)
