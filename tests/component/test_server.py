"""The HTTP server against slow, idle, greedy and malformed peers (issue 13, parts 3 and 6).

The server runs as the daemon runs it (server.runner around build_app) on a free port, with an
in-memory publisher; peers are raw sockets, so every byte and every pause is the test's choice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from bridge import server
from bridge.metrics import Metrics
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, make_config

Serve = Callable[..., Awaitable[tuple[int, Metrics, web.Application]]]
WAIT_S = 10.0  # generous bound on anything expected within a second on a busy machine


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`await serve(**listen)` → (port, metrics, app) of a running server with those limits."""
    runners: list[web.AppRunner] = []

    async def start(
        hook: Callable[[web.Request, web.StreamResponse], Awaitable[None]] | None = None,
        **listen: Any,
    ) -> tuple[int, Metrics, web.Application]:
        config = make_config(listen=listen)
        metrics = Metrics()
        app = build_app(config, InMemoryPublisher(), metrics)
        if hook is not None:
            app.on_response_prepare.append(hook)
        runner = server.runner(app, config.listen, metrics, 1.0)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port, metrics, app

    yield start
    for runner in runners:
        await runner.cleanup()


async def exchange(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection that has sent `data`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (bounded in time)."""
    return await asyncio.wait_for(reader.read(), WAIT_S)


def post_head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /apievents HTTP/1.1\r\nHost: t\r\nAuthorization: {TEST_KEY}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def metric(metrics: Metrics, line_start: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_slowloris_connections_are_closed_after_the_header_timeout(serve: Serve) -> None:
    # Before: aiohttp waited for headers as long as its keep-alive (3,630 s): 100 connections
    # sending half a request line stayed open indefinitely.
    port, metrics, _ = await serve(header_timeout_s=0.5)
    peers = [await exchange(port, b"POST /apievents HTTP/1.1\r\nHost: t\r\n") for _ in range(100)]
    closed = await asyncio.gather(*(answer(reader) for reader, _ in peers))
    assert closed == [b""] * 100
    assert (
        metric(metrics, 'od_bridge_http_connections_closed_total{reason="header_timeout"}') == 100
    )
    for _, writer in peers:
        writer.close()


async def test_an_idle_keepalive_connection_is_closed(serve: Serve) -> None:
    # Before: an idle keep-alive connection lived ~1 h (aiohttp's default 3,630 s).
    port, _, _ = await serve(keepalive_timeout_s=0.5, header_timeout_s=30)
    reader, writer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    received = await answer(reader)  # the answer, then EOF once the connection idled out
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.endswith(b'{"status": "alive"}')
    writer.close()


async def test_keepalive_requests_are_not_cut_by_the_header_timeout(serve: Serve) -> None:
    # The header clock runs only while a request's headers are due, not across idle keep-alive.
    port, _, _ = await serve(header_timeout_s=0.3, keepalive_timeout_s=30)
    reader, writer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b'"alive"}'), WAIT_S)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert writer.is_closing() is False
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
    second = await asyncio.wait_for(reader.readuntil(b"}"), WAIT_S)
    assert second.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_a_slow_body_is_refused_and_frees_its_slot(serve: Serve) -> None:
    # Before: one slow upload per concurrency slot made every other request 503 indefinitely.
    # 2 s: ample time to see the slot taken before the slow request times out, even on a
    # loaded machine.
    port, metrics, _ = await serve(max_concurrent_requests=1, body_chunk_timeout_s=2.0)
    slow_reader, slow = await exchange(port, post_head(1000) + b'[{"AptNum": 1')
    # Once the slow request holds the only slot, a second one is turned away...
    status = b""
    for _ in range(100):
        if b" 503 " in status:
            break
        reader, writer = await exchange(port, post_head(2, "Connection: close\r\n") + b"[]")
        status = await answer(reader)
        writer.close()
    assert b" 503 " in status
    # ...until the slow one times out (408), after which the slot is free again.
    refused = await answer(slow_reader)
    assert refused.startswith(b"HTTP/1.1 408 ")
    assert refused.endswith(b'{"error":"the body did not arrive in time"}')
    reader, writer = await exchange(port, post_head(2, "Connection: close\r\n") + b"[]")
    assert (await answer(reader)).startswith(b"HTTP/1.1 200 ")
    assert metric(metrics, 'od_bridge_requests_total{customer="main-office",status="408",type="-"}')
    slow.close()
    writer.close()


async def test_a_body_that_trickles_past_the_total_timeout_is_refused(serve: Serve) -> None:
    port, _, _ = await serve(body_timeout_s=0.5, body_chunk_timeout_s=30)
    reader, writer = await exchange(port, post_head(100_000) + b"[")
    writer.write(b" " * 10)  # one chunk: the per-chunk clock restarts, the total one does not
    refused = await answer(reader)
    assert refused.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_at_the_connection_cap_idle_connections_make_room(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: 1,100 idle connections took all 1,024 descriptors; /healthz and POSTs failed and
    # nothing was logged. Here the cap is 16 and 40 idle connections are open.
    port, metrics, _ = await serve(max_connections=16, header_timeout_s=60)
    idle = [await exchange(port, b"") for _ in range(40)]
    reader, writer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"}"), WAIT_S)).startswith(b"HTTP/1.1 200 ")
    reader, post = await exchange(port, post_head(2, "Connection: close\r\n") + b"[]")
    assert (await answer(reader)).startswith(b"HTTP/1.1 200 ")
    assert metric(metrics, "od_bridge_http_connections_open") <= 16 + server.PROBE_RESERVE
    assert metric(metrics, 'od_bridge_http_connections_closed_total{reason="limit"}') >= 24
    lines = [r for r in caplog.records if r.getMessage().startswith("connection limit reached")]
    assert len(lines) == 1  # one line, not one per connection
    for _, w in [*idle, (reader, writer), (reader, post)]:
        w.close()


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert server.connection_cap(1000, 1024) == 1024 - server.FD_RESERVE - server.PROBE_RESERVE
    assert server.connection_cap(100, 1024) == 100
    assert server.connection_cap(1000, None) == 1000


async def test_a_client_leaving_mid_body_is_not_a_server_error(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: counted and logged as a 500 ("unexpected error"), so a 5xx alert fired.
    done = asyncio.Event()

    async def seen(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/apievents":
            done.set()

    port, metrics, _ = await serve(hook=seen)
    caplog.set_level(logging.DEBUG)
    _, writer = await exchange(port, post_head(1000) + b'[{"AptNum": 1')
    writer.close()
    await asyncio.wait_for(done.wait(), WAIT_S)
    requests = 'od_bridge_requests_total{customer="main-office",status='
    assert metric(metrics, requests + '"client_closed",type="-"}') == 1
    assert metric(metrics, requests + '"500",type="-"}') == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_body_that_does_not_decode_as_its_content_encoding_is_a_400(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: `Content-Encoding: gzip` with a body that is not gzip → 500, and an error line.
    port, _, _ = await serve()
    body = b"[{}] is not gzip"
    reader, writer = await exchange(port, post_head(len(body), "Content-Encoding: gzip\r\n") + body)
    received = await answer(reader)
    assert received.startswith(b"HTTP/1.1 400 ")
    assert received.endswith(
        b'{"error":"body could not be read (Can not decode content-encoding: gzip)"}'
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    writer.close()


async def test_malformed_requests_answer_json_and_log_sparingly(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: aiohttp's plain-text 400, and one error-level line with a traceback per request
    # (100 requests, 100 lines).
    port, metrics, _ = await serve()
    caplog.set_level(logging.INFO)
    key_line = f"Authorization {TEST_KEY}\r\n"  # not a valid header: its bytes must not echo
    for _ in range(100):
        reader, writer = await exchange(port, f"GET /healthz HTTP/1.1\r\n{key_line}\r\n".encode())
        received = await answer(reader)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 400 ")
        assert b"Content-Type: application/json" in head
        assert body == b'{"error":"Bad Request"}'
        writer.close()
    lines = [r for r in caplog.records if r.name.startswith(("od_bridge.server", "aiohttp"))]
    assert [r.getMessage() for r in lines] == ["malformed HTTP request refused"]
    assert TEST_KEY not in caplog.text
    assert metric(metrics, 'od_bridge_rejected_requests_total{status="400"}') == 100


async def test_an_unknown_expectation_answers_json(serve: Serve) -> None:
    # Before: aiohttp's plain-text 417.
    port, _, _ = await serve()
    reader, writer = await exchange(port, post_head(2, "Expect: something-else\r\n"))
    received = await answer(reader)
    assert received.startswith(b"HTTP/1.1 417 ")
    assert received.endswith(b'{"error":"Expectation Failed"}')
    writer.close()
