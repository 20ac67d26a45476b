"""OpenDentalClient over real HTTP: auth, paging, error messages, retries, pacing, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from bridge.config_loader import parse
from bridge.emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY, Emulator, Settings
from bridge.errors import OpenDentalAnswerError, OpenDentalUnreachable
from bridge.sync.client import OpenDentalClient, message_of
from bridge.sync.pacing import retry_after

DB = {
    "EndPointUrl": "http://127.0.0.1:8080/apievents/Appointment",
    "WatchTable": "Appointment",
    "PollingSeconds": 30,
}


def client(base: str, **kw: Any) -> OpenDentalClient:
    return OpenDentalClient(base, DOC_DEVELOPER_KEY, DOC_CUSTOMER_KEY, **kw)


async def emulated(settings: Settings) -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(settings)
    async with emulator.serve() as base:
        yield emulator, base


class Script:
    """A scripted server: answers each call with the next (status, body, headers) in line."""

    def __init__(self, answers: list[tuple[int, str, dict[str, str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str | None]] = []
        self.hang = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path_qs, request.headers.get("Authorization")))
        if not self.answers:
            await self.hang.wait()  # never set: the client must time out
        status, body, headers = self.answers.pop(0)
        return web.Response(status=status, text=body, headers=headers)


async def scripted(script: Script) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"
    finally:
        script.hang.set()
        await runner.cleanup()


def recorder() -> tuple[list[float], Callable[[float], Any]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return waits, sleep


async def test_crud_against_the_emulator() -> None:
    async for _, base in emulated(Settings()):
        async with client(base) as od:
            made = await od.create_subscription(DB)
            assert made["SubscriptionNum"] == 1 and made["CustomerKey"] == DOC_CUSTOMER_KEY
            await od.update_subscription(1, {"PollingSeconds": 60})
            (listed,) = await od.list_subscriptions()
            assert listed["PollingSeconds"] == 60
            await od.delete_subscription(1)
            assert await od.list_subscriptions() == []


async def test_follows_pages_when_a_full_page_comes_back() -> None:
    async for _, base in emulated(Settings(page_size=2)):
        async with client(base, page_size=2) as od:
            for n in range(5):
                await od.create_subscription(DB | {"Workstation": f"WS{n}"})
            assert [s["SubscriptionNum"] for s in await od.list_subscriptions()] == [1, 2, 3, 4, 5]


async def test_server_ignoring_offset_cannot_loop_us() -> None:
    page = '[{"SubscriptionNum": 1}, {"SubscriptionNum": 2}]'
    script = Script([(200, page, {}), (200, page, {})])
    async for base in scripted(script):
        async with client(base, page_size=2) as od:
            assert len(await od.list_subscriptions()) == 2
    assert [c[1] for c in script.calls] == [
        "/api/v1/subscriptions",
        "/api/v1/subscriptions?Offset=2",
    ]


async def test_sends_odfhir_auth() -> None:
    script = Script([(200, "[]", {})])
    async for base in scripted(script):
        async with client(base) as od:
            await od.list_subscriptions()
    assert script.calls[0][2] == f"ODFHIR {DOC_DEVELOPER_KEY}/{DOC_CUSTOMER_KEY}"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, '"WatchTable is required"', "WatchTable is required"),
        (400, "PatNum is required", "PatNum is required"),
        (401, '"API key has not been assigned"', "API key has not been assigned"),
        (404, '{"message": "Subscription not found."}', "Subscription not found."),
    ],
)
async def test_client_errors_carry_open_dentals_message(
    status: int, body: str, message: str
) -> None:
    script = Script([(status, body, {})])
    async for base in scripted(script):
        async with client(base) as od:
            with pytest.raises(OpenDentalAnswerError) as caught:
                await od.create_subscription(DB)
    assert (caught.value.status, caught.value.message) == (status, message)
    assert len(script.calls) == 1  # never retried


async def test_emulator_400_message_surfaces() -> None:
    async for _, base in emulated(Settings()):
        async with client(base) as od:
            with pytest.raises(OpenDentalAnswerError, match="PollingSeconds is required"):
                await od.create_subscription({"EndPointUrl": "http://x/y", "WatchTable": "Patient"})


async def test_retries_429_honouring_retry_after_then_5xx_with_backoff() -> None:
    script = Script(
        [(429, '"slow down"', {"Retry-After": "7"}), (503, "", {}), (504, "", {}), (200, "[]", {})]
    )
    waits, sleep = recorder()
    async for base in scripted(script):
        async with client(base, sleep=sleep, max_backoff_s=30) as od:
            assert await od.list_subscriptions() == []
    assert len(script.calls) == 4
    assert 7 <= waits[0] <= 7 + 3.1  # Retry-After plus a little jitter
    assert all(0 <= w <= 30 for w in waits[1:])


async def test_gives_up_after_max_attempts_with_the_last_message() -> None:
    script = Script([(500, '"database is locked"', {})] * 3)
    waits, sleep = recorder()
    async for base in scripted(script):
        async with client(base, sleep=sleep, max_attempts=3) as od:
            with pytest.raises(OpenDentalAnswerError) as caught:
                await od.list_subscriptions()
    assert (caught.value.status, caught.value.message) == (500, "database is locked")
    assert len(waits) == 2


async def test_connection_refused_is_unreachable_after_retries() -> None:
    waits, sleep = recorder()
    async with client("http://127.0.0.1:9/api/v1", sleep=sleep, max_attempts=3) as od:
        with pytest.raises(ConnectionError, match="cannot reach the Open Dental API") as caught:
            await od.list_subscriptions()
    assert isinstance(caught.value, OpenDentalUnreachable)  # also a ConnectionError, no status
    assert not hasattr(caught.value, "status")
    assert len(waits) == 2


async def test_every_call_has_a_timeout() -> None:
    script = Script([])  # hangs
    _, sleep = recorder()
    async for base in scripted(script):
        async with client(base, timeout_s=0.2, max_attempts=2, sleep=sleep) as od:
            started = time.monotonic()
            with pytest.raises(OpenDentalUnreachable):
                await od.list_subscriptions()
            assert time.monotonic() - started < 2


async def test_pacing_spaces_calls_per_customer_key() -> None:
    async for emulator, base in emulated(Settings(throttle_s=0.15)):
        async with client(base, min_interval_s=0.2) as od:
            started = time.monotonic()
            for _ in range(4):
                await od.list_subscriptions()
            assert time.monotonic() - started >= 0.6
        assert emulator.gate.throttled == 0  # paced: the throttle never had to say no


async def test_throttled_emulator_is_ridden_out_by_retrying() -> None:
    async for emulator, base in emulated(Settings(throttle_s=0.3)):
        async with client(base, min_interval_s=0, max_backoff_s=2) as od:
            await od.list_subscriptions()
            await od.list_subscriptions()  # too soon: 429, Retry-After 1, then fine
        assert emulator.gate.throttled >= 1 and emulator.gate.calls == 2


def test_retry_after_and_message_parsing() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after("soon") is None and retry_after(None) is None
    assert message_of('"x"') == "x" and message_of("  plain  ") == "plain"
    assert message_of("") == "(no message)"
    assert len(message_of("y" * 1000)) == 300


def test_for_customer_defaults_follow_remote_vs_local() -> None:
    config = parse(
        """
customers:
  - {name: remote, customer_key: k1, api: {developer_key: d}}
  - {name: local, customer_key: k2, api: {url: "http://od-server:30223/api/v1", developer_key: d}}
""",
        env={},
    )
    remote, local = (OpenDentalClient.for_customer(c) for c in config.customers)
    assert (remote.pacer.interval_s, remote.page_size) == (5.0, 100)
    assert (local.pacer.interval_s, local.page_size) == (0.0, 1000)
    assert "d/" not in repr(remote) and "k1" not in repr(remote)
