"""What tests share besides fixtures: samples, a config builder, ports, the broker's address."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson
import pytest
import yaml
from pamqp import commands as spec

from bridge.config import Config
from bridge.config_loader import parse
from bridge.emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY
from bridge.events import APP_ID, CONTENT_TYPE, Message
from bridge.publisher import AmqpPublisher

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TEST_KEY = "VzkmZEaUWOjnQX2z"  # Open Dental's public test customer key, as in the samples
OTHER_KEY = "other-office-key-0001"  # the second customer's (north-clinic, New York)


def sample(name: str) -> dict[str, Any]:
    """One delivery from tests/fixtures/samples: {"headers": ..., "body": ...}."""
    data: dict[str, Any] = orjson.loads((SAMPLES / f"{name}.json").read_bytes())
    return data


def all_samples() -> list[str]:
    """Names of every sample delivery."""
    return sorted(p.stem for p in SAMPLES.glob("*.json"))


def body_bytes(delivery: dict[str, Any]) -> bytes:
    """A sample's body as the sender would POST it."""
    return json.dumps(delivery["body"]).encode()  # with spaces, as Open Dental sends it


def make_config(
    prefix: str = "opendental",
    *,
    listen: dict[str, Any] | None = None,
    customer: dict[str, Any] | None = None,
    amqp: dict[str, Any] | None = None,
    spool: dict[str, Any] | None = None,
) -> Config:
    """A valid config: main-office (the test key, Chicago) and north-clinic; overrides merge in."""
    raw = {
        "listen": {"host": "127.0.0.1", "port": 0, "path": "/apievents", **(listen or {})},
        "amqp": {"url": AMQP_URL, "exchange_prefix": prefix, "retry_budget_s": 2.0, **(amqp or {})},
        "spool": spool or {"enabled": False},
        "customers": [
            {"name": "main-office", "customer_key": TEST_KEY, "timezone": "America/Chicago"}
            | (customer or {}),
            {"name": "north-clinic", "customer_key": OTHER_KEY, "timezone": "America/New_York"},
        ],
    }
    return parse(yaml.safe_dump(raw), env={})


def office_config_text(
    *, port: int, amqp_url: str, prefix: str, api_url: str, subscriptions: list[str]
) -> str:
    """The YAML of a bridge on `port` syncing main-office (the docs' keys) with an emulator."""
    listed = "\n".join(f"      - {{{entry}}}" for entry in subscriptions)
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
public_url: http://127.0.0.1:{port}
amqp: {{url: "{amqp_url}", exchange_prefix: {prefix}}}
spool: {{enabled: false}}
customers:
  - name: main-office
    customer_key: {DOC_CUSTOMER_KEY}
    timezone: America/Chicago
    api: {{url: "{api_url}", developer_key: {DOC_DEVELOPER_KEY}, min_interval_s: 0}}
    subscriptions:
{listed}
sync: {{mode: off}}
log: {{level: WARNING}}
"""


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


MISSING: Counter[str] = Counter()  # why tests could not run (what was missing) -> how many


def missing(what: str) -> NoReturn:
    """Fail under CI=true (where everything must run), else skip with the reason."""
    MISSING[what] += 1
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required under CI=true)")
    pytest.skip(what)


def assert_path(publisher: AmqpPublisher, path: str) -> None:
    """The publisher runs on `path`: a fast path that failed its self-check fails the test."""
    assert publisher.fast is (path == "fast"), f"expected the {path} path"


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


def amqp_properties(message: Message) -> spec.Basic.Properties:
    """The AMQP properties the bridge sends with `message` (as publisher.amqp_message does)."""
    return spec.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=2,
        message_id=message.message_id,
        message_type=message.type,
        timestamp=datetime.fromtimestamp(message.timestamp, UTC),
        app_id=APP_ID,
    )
