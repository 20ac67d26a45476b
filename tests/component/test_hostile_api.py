"""The Open Dental client against a hostile or absent API (issue 13, part 5)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from bridge.cli import main
from bridge.errors import OpenDentalAnswerError
from bridge.sync import client as odclient
from bridge.sync.client import OpenDentalClient
from tests.support import free_port

DEV_KEY = "DevKey-Hostile-0001"
CUSTOMER_KEY = "CustKey-Hostile-0002"
OLD_KEY = "CustKey-Rotated-0003"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def api() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """`await api(handler)` → the base URL of an API answering GET /subscriptions with it."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v1/subscriptions", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


async def no_sleep(_: float) -> None:
    return None


async def test_pages_that_never_end_stop_at_a_cap(api: Callable[[Handler], Awaitable[str]]) -> None:
    # Before: pages that always bring new subscriptions grew `od-bridge sync` to 1.5 GB in 12 s.
    numbers = itertools.count(1)
    pages = 0

    async def endless(_: web.Request) -> web.StreamResponse:
        nonlocal pages
        pages += 1
        return web.json_response([{"SubscriptionNum": next(numbers)} for _ in range(1000)])

    base = await api(endless)
    async with OpenDentalClient(base, DEV_KEY, CUSTOMER_KEY, page_size=1000) as client:
        with pytest.raises(OpenDentalAnswerError, match="GET /subscriptions kept paging"):
            await client.list_subscriptions()
    assert pages <= odclient.MAX_LIST_ITEMS // 1000 + 2


@pytest.mark.parametrize("declared", [True, False])
async def test_a_huge_answer_is_refused_while_reading(
    api: Callable[[Handler], Awaitable[str]], declared: bool
) -> None:
    # Before: a 50 MB response peaked at 700 MB.
    async def huge(request: web.Request) -> web.StreamResponse:
        size = 50 * 1024 * 1024
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declared:
            response.content_length = size
        await response.prepare(request)
        chunk = b" " * 1024 * 1024
        try:
            for _ in range(size // len(chunk)):
                await response.write(chunk)
        except ConnectionError:
            pass  # the client stopped reading: what we want
        return response

    base = await api(huge)
    async with OpenDentalClient(base, DEV_KEY, CUSTOMER_KEY, max_attempts=1) as client:
        with pytest.raises(OpenDentalAnswerError, match="answer larger than 4194304 bytes"):
            await client.list_subscriptions()
        assert client.bytes_read <= odclient.MAX_RESPONSE_BYTES


@pytest.mark.parametrize("status", [400, 503])
async def test_an_api_echoing_the_keys_never_shows_them(
    api: Callable[[Handler], Awaitable[str]], status: int
) -> None:
    # Before: an API that echoes Authorization in its error body put the developer key and the
    # customer key into stderr and the daemon's log.
    async def echo(request: web.Request) -> web.StreamResponse:
        text = f"bad header {request.headers['Authorization']} (also {OLD_KEY})"
        return web.json_response({"message": text}, status=status)

    base = await api(echo)
    async with OpenDentalClient(
        base, DEV_KEY, CUSTOMER_KEY, other_keys=(OLD_KEY,), max_attempts=2, sleep=no_sleep
    ) as client:
        with pytest.raises(OpenDentalAnswerError) as raised:
            await client.list_subscriptions()
    text = str(raised.value)
    assert "bad header ODFHIR ***/*** (also ***)" in text
    for key in (DEV_KEY, CUSTOMER_KEY, OLD_KEY):
        assert key not in text


async def test_sync_with_the_api_unreachable_says_why_per_customer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: six bare "open dental call failed" lines, then "(no subscriptions, none wanted)"
    # although three subscriptions were wanted.
    ports = [free_port(), free_port()]
    customers = "\n".join(
        f"""  - name: office-{n}
    customer_key: {CUSTOMER_KEY}-{n}
    api: {{url: "http://127.0.0.1:{port}/api/v1", developer_key: {DEV_KEY}, min_interval_s: 0}}
    subscriptions: [{{watch_table: Appointment}}, {{watch_table: Patient}}]"""
        for n, port in enumerate(ports)
    )
    config = tmp_path / "c.yaml"
    config.write_text(f"customers:\n{customers}\n")
    code = await asyncio.to_thread(main, ["sync", "-c", str(config)])
    captured = capsys.readouterr()
    assert code == 1
    assert "none wanted" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2, lines
    for n, (line, port) in enumerate(zip(lines, ports, strict=True)):
        assert line.startswith(f"error: office-{n}: cannot reach the Open Dental API at ")
        assert f"Connect call failed ('127.0.0.1', {port})" in line
    assert DEV_KEY not in captured.err + captured.out
