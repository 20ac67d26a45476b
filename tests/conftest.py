"""Shared fixtures: samples, configs, and a real RabbitMQ (fail, not skip, under CI=true)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import orjson
import pytest

from bridge.config import Config
from bridge.config_loader import parse
from bridge.opendental import KNOWN_TABLES
from bridge.publisher import AmqpPublisher, declare_event_exchange
from bridge.service import Service
from tests.proxy import Proxy
from tests.rabbit_nodes import RabbitCluster, RabbitNode, installed

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TEST_KEY = "VzkmZEaUWOjnQX2z"


def sample(name: str) -> dict[str, Any]:
    """One delivery from tests/fixtures/samples: {"headers": ..., "body": ...}."""
    data: dict[str, Any] = orjson.loads((SAMPLES / f"{name}.json").read_bytes())
    return data


def all_samples() -> list[str]:
    """Names of every sample delivery."""
    return sorted(p.stem for p in SAMPLES.glob("*.json"))


def make_config(prefix: str = "opendental", **overrides: Any) -> Config:
    """A valid config for tests: one customer with the public test key, Chicago time."""
    spool = overrides.pop("spool", "{enabled: false}")
    extra = overrides.pop("extra", "")
    limit = overrides.pop("max_body_bytes", 16777216)
    text = f"""
listen: {{host: 127.0.0.1, port: 0, path: /apievents, max_body_bytes: {limit}}}
amqp:
  url: {AMQP_URL}
  exchange_prefix: {prefix}
  retry_budget_s: {overrides.pop("retry_budget_s", 2.0)}
spool: {spool}
customers:
  - name: main-office
    customer_key: {TEST_KEY}
    timezone: America/Chicago
  - name: north-clinic
    customer_key: other-office-key-0001
    timezone: America/New_York
{extra}
"""
    assert not overrides, overrides
    return parse(text, env={})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a bridge that must know its URL up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def broker_address() -> tuple[str, int]:
    """Host and port of the broker at AMQP_URL."""
    parts = urlsplit(AMQP_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def broker_available() -> bool:
    """True if something accepts TCP where AMQP_URL points."""
    try:
        with socket.create_connection(broker_address(), timeout=1):
            return True
    except OSError:
        return False


def missing(what: str) -> None:
    """Fail under CI=true (where everything must run), else skip with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required under CI=true)")
    pytest.skip(what)


@pytest.fixture
def need_broker() -> None:
    """A test needing RabbitMQ at AMQP_URL: fails under CI=true when it is absent, else skips."""
    if not broker_available():
        host, port = broker_address()
        missing(f"RabbitMQ is not reachable at {host}:{port} (AMQP_URL)")


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


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop early-launched private nodes whose fixture never ran."""
    while _booting:
        _booting.popitem()[1].stop()


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


def assert_path(publisher: AmqpPublisher, path: str) -> None:
    """The publisher runs on `path`: a fast path that failed its self-check fails the test."""
    assert publisher.fast is (path == "fast"), f"expected the {path} path"


@pytest.fixture
async def bridge(prefix: str, publish_path: str) -> AsyncIterator[str]:
    """A running bridge (real AMQP publisher) on a free port; yields its webhook URL."""
    service = Service(make_config(prefix))
    await service.start()
    assert service.publisher.ready
    assert_path(service.publisher, publish_path)
    yield f"http://127.0.0.1:{service.port}/apievents"
    await service.stop()


class Collector:
    """A consumer on a fresh exclusive queue: collects messages and wakes waiters."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, message: Any) -> None:
        """Record one delivery."""
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        """Wait until at least `count` messages arrived."""

        async def until() -> None:
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.messages

    def bodies(self) -> list[dict[str, Any]]:
        """Decoded JSON bodies in arrival order."""
        return [orjson.loads(m.body) for m in self.messages]


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
