"""Fixtures: a real RabbitMQ (fail, not skip, under CI=true), private nodes, a running bridge."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aio_pika
import pytest

from bridge.opendental import KNOWN_TABLES
from bridge.publisher import AmqpPublisher, declare_event_exchange
from bridge.service import Service
from tests.broker_guard import Guard
from tests.proxy import Proxy
from tests.rabbit_nodes import RabbitCluster, RabbitNode, installed
from tests.support import (
    AMQP_URL,
    MISSING,
    Collector,
    assert_path,
    broker_address,
    broker_available,
    make_config,
    missing,
)


@pytest.fixture
def need_broker() -> None:
    """A test needing RabbitMQ at AMQP_URL: fails under CI=true when it is absent, else skips."""
    if not broker_available():
        host, port = broker_address()
        where = f"{host}:{port}"
        missing(f"no RabbitMQ at {where} for the integration tests (start it, or set AMQP_URL)")


_booting: dict[int, RabbitCluster] = {}  # private clusters launched early, by size


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start booting the private nodes the selected tests need, so they boot while others run."""
    if session.config.option.collectonly or not installed():
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for fixture, size in (("private_rabbit", 1), ("rabbit_cluster", 3)):
        if fixture in wanted:
            cluster = RabbitCluster(size)
            try:
                cluster.launch()
            except Exception:  # the fixture boots it again and reports why it fails
                with contextlib.suppress(Exception):
                    cluster.stop()
                continue
            _booting[size] = cluster


_guard: list[Guard] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read the local broker's uptime, app and watermark (in the background) to compare later."""
    if not session.config.option.collectonly:
        _guard.append(Guard())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop early-launched private nodes; fail the run if the broker at AMQP_URL was disturbed."""
    while _booting:
        _booting.popitem()[1].stop()
    if _guard:
        ok, line = _guard.pop().verdict()
        _summary.append(line)
        if not ok and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


_summary: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per thing a test needed and did not find, and the broker guard's verdict."""
    for what, count in MISSING.items():
        verb = "failed" if os.environ.get("CI") == "true" else "did not run"
        terminalreporter.write_line(f"{count} tests {verb}: {what}", yellow=True)
    for line in _summary:
        terminalreporter.write_line(line)


@contextlib.contextmanager
def _private_cluster(size: int) -> Iterator[RabbitCluster]:
    if not installed():
        missing("rabbitmq-server is not installed (private nodes need /usr/lib/rabbitmq/bin)")
    cluster = _booting.pop(size, None) or RabbitCluster(size)
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def private_rabbit() -> Iterator[RabbitNode]:
    """A private RabbitMQ node for tests that stop, kill, alarm or reconfigure a broker.

    Shared by the session: a test that stops or alarms it puts it back before it ends.
    """
    with _private_cluster(1) as cluster:
        yield cluster.nodes[0]


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """A private 3-node RabbitMQ cluster (about 15-30 s to start), removed after the session."""
    with _private_cluster(3) as cluster:
        yield cluster


@pytest.fixture
async def proxy(need_broker: None) -> AsyncIterator[Proxy]:
    """A TCP proxy in front of the broker, for cutting, stalling and refusing connections."""
    p = Proxy(*broker_address())
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def prefix(need_broker: None) -> AsyncIterator[str]:
    """A unique exchange prefix; everything declared under it is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        exchanges = [f"{name}.{t.kind}.{t.name.lower()}" for t in KNOWN_TABLES]
        exchanges += [f"{name}.db.unknown", f"{name}.ui.unknown", f"{name}.db.commlog"]
        exchanges += [f"{name}.unrouted"]
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
        await channel.queue_delete(f"{name}.unrouted")


@pytest.fixture(params=["fast", "public"])
def publish_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the batched fast path and on aio-pika's public per-message path."""
    if request.param == "public":
        monkeypatch.setattr(AmqpPublisher, "use_fast_path", False)
    path: str = request.param
    return path


@pytest.fixture
async def bridge(prefix: str, publish_path: str) -> AsyncIterator[str]:
    """A running bridge (real AMQP publisher) on a free port; yields its webhook URL."""
    service = Service(make_config(prefix))
    await service.start()
    assert service.publisher.ready
    assert_path(service.publisher, publish_path)
    yield f"http://127.0.0.1:{service.port}/apievents"
    await service.stop()


@pytest.fixture
async def consume(
    need_broker: None,
) -> AsyncIterator[Callable[[str, str], Any]]:
    """`await consume(exchange, binding_key)` → a Collector fed by a temporary queue."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    channel = await connection.channel()

    async def bind(exchange: str, key: str = "#") -> Collector:
        collector = Collector()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        prefix = exchange.split(".", maxsplit=1)[0]
        declared = await declare_event_exchange(channel, prefix, exchange)
        await queue.bind(declared, routing_key=key)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            collector.add(message)

        await queue.consume(on_message)
        return collector

    async def queue(name: str) -> Collector:
        collector = Collector()
        declared = await channel.declare_queue(name, passive=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            collector.add(message)

        await declared.consume(on_message)
        return collector

    bind.queue = queue  # type: ignore[attr-defined]
    yield bind
    await connection.close()
