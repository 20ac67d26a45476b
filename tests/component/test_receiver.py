"""The receiver over HTTP (aiohttp test server) with an in-memory publisher: every answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, all_samples, make_config, sample

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
async def client(aiohttp_client: MakeClient, publisher: InMemoryPublisher) -> Client:
    config = make_config(listen={"max_body_bytes": 4096 * 16})
    return await aiohttp_client(build_app(config, publisher))


async def post(
    client: Client, body: Any, headers: dict[str, str] | None = None, path: str = "/apievents"
) -> tuple[int, dict[str, Any], Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(
        path, data=data, headers={"Authorization": TEST_KEY} if headers is None else headers
    )
    return response.status, dict(response.headers), await response.json()


@pytest.mark.parametrize("name", all_samples())
async def test_every_sample_is_accepted(
    client: Client, publisher: InMemoryPublisher, name: str
) -> None:
    delivery = sample(name)
    status, _, answer = await post(client, delivery["body"], delivery["headers"])
    rows = delivery["body"] if isinstance(delivery["body"], list) else [delivery["body"]]
    assert (status, answer) == (200, {"accepted": len(rows)})
    assert len(publisher.messages) == len(rows)
    first = publisher.messages[0]
    assert first.exchange.startswith("opendental.")
    workstation = delivery["headers"].get("Workstation", "_")
    assert first.routing_key == f"main-office.0.{workstation}"


async def test_rows_keep_their_order(client: Client, publisher: InMemoryPublisher) -> None:
    rows = [{"AptNum": n, "DateTStamp": "2026-11-28 08:00:00"} for n in range(1000)]
    status, _, _ = await post(client, rows, {"Authorization": TEST_KEY})
    assert status == 200
    assert [orjson.loads(m.body)["data"]["AptNum"] for m in publisher.messages] == list(range(1000))
    assert len({m.message_id for m in publisher.messages}) == 1000


async def test_second_customer_has_its_own_key(
    client: Client, publisher: InMemoryPublisher
) -> None:
    status, _, _ = await post(
        client, sample("patient")["body"], {"Authorization": "other-office-key-0001"}
    )
    assert status == 200
    assert orjson.loads(publisher.messages[0].body)["odcustomer"] == "north-clinic"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing Authorization header (the customer API key)"),
        ({"Authorization": ""}, "missing Authorization header (the customer API key)"),
        ({"Authorization": "wrong"}, "unknown customer key"),
        ({"Authorization": TEST_KEY + "x"}, "unknown customer key"),
        ({"Authorization": f"ODFHIR {TEST_KEY}"}, "unknown customer key"),
    ],
)
async def test_401_publishes_nothing(
    client: Client, publisher: InMemoryPublisher, headers: dict[str, str], reason: str
) -> None:
    status, response_headers, answer = await post(client, sample("appointment")["body"], headers)
    assert (status, answer) == (401, {"error": reason})
    assert response_headers["Content-Type"].startswith("application/json")
    assert publisher.messages == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid UTF-8 JSON"),
        (b"", "body is not valid UTF-8 JSON"),
        (b'[{"AptNum": 1}', "body is not valid UTF-8 JSON"),
        (b'"just a string"', "body must be a JSON object or an array of objects"),
        (b"42", "body must be a JSON object or an array of objects"),
        (b'[{"AptNum": 1}, 2]', "body must be a JSON object or an array of objects"),
        (b'[[{"AptNum": 1}]]', "body must be a JSON object or an array of objects"),
        (b'{"LName": "\xff\xfe"}', "body is not valid UTF-8 JSON"),
        ('[{"LName": "Doe"}]'.encode("utf-16"), "body must be UTF-8 JSON"),
        (b"\xef\xbb\xbf\xef\xbb\xbf[]", "body is not valid UTF-8 JSON"),
    ],
)
async def test_400_publishes_nothing(
    client: Client, publisher: InMemoryPublisher, body: bytes, reason: str
) -> None:
    status, _, answer = await post(client, body)
    assert (status, answer) == (400, {"error": reason})
    assert publisher.messages == []


async def test_utf8_bom_and_any_content_type_are_accepted(
    client: Client, publisher: InMemoryPublisher
) -> None:
    body = b"\xef\xbb\xbf" + orjson.dumps(sample("appointment")["body"])
    for content_type in (
        "application/json; charset=utf-8",
        "text/plain",
        "application/octet-stream",
    ):
        headers = {"Authorization": TEST_KEY, "Content-Type": content_type}
        status, _, _ = await post(client, body, headers)
        assert status == 200
    assert len(publisher.messages) == 6


async def test_413_by_declared_length(client: Client, publisher: InMemoryPublisher) -> None:
    body = orjson.dumps([{"AptNum": n, "Note": "x" * 100} for n in range(1000)])
    status, headers, answer = await post(client, body)
    assert (status, answer) == (413, {"error": "body is larger than 65536 bytes"})
    assert headers.get("Connection", "").lower() == "close"
    assert publisher.messages == []


async def test_413_while_streaming_without_length(
    client: Client, publisher: InMemoryPublisher
) -> None:
    async def chunks() -> Any:
        for n in range(200):
            yield orjson.dumps({"AptNum": n, "Note": "x" * 1000}) + b","

    response = await client.post("/apievents", data=chunks(), headers={"Authorization": TEST_KEY})
    assert response.status == 413
    assert publisher.messages == []


async def test_503_with_retry_after_when_the_broker_cannot_confirm(
    client: Client, publisher: InMemoryPublisher
) -> None:
    publisher.fail = True
    status, headers, answer = await post(client, sample("appointment")["body"])
    assert status == 503
    assert int(headers["Retry-After"]) > 0
    assert answer == {"error": "the broker cannot take events right now; retry later"}


@pytest.mark.parametrize(
    ("path", "headers", "exchange"),
    [
        ("/apievents/", {}, "opendental.db.appointment"),
        ("/apievents/Patient", {}, "opendental.db.patient"),
        ("/apievents/patientevent/", {}, "opendental.db.patient"),
        ("/apievents?type=patfield", {}, "opendental.db.patfield"),
        ("/apievents/Patient", {"Event-Type": "WatchTable: Schedule"}, "opendental.db.schedule"),
        ("/apievents", {"Event-Type": "WatchTable: Commlog"}, "opendental.db.commlog"),
        ("/apievents", {"Event-Type": "UiEventType: ChartOpened"}, "opendental.ui.chartopened"),
        ("/apievents/whatever", {}, "opendental.db.appointment"),  # falls back to the shape
    ],
)
async def test_type_from_header_path_query_or_shape(
    client: Client, publisher: InMemoryPublisher, path: str, headers: dict[str, str], exchange: str
) -> None:
    status, _, _ = await post(
        client, sample("appointment")["body"], {"Authorization": TEST_KEY, **headers}, path
    )
    assert status == 200
    assert {m.exchange for m in publisher.messages} == {exchange}


async def test_unknown_shapes_are_still_forwarded(
    client: Client, publisher: InMemoryPublisher
) -> None:
    await post(client, [{"Foo": 1}])
    await post(client, {"Bar": 2})
    assert [m.exchange for m in publisher.messages] == [
        "opendental.db.unknown",
        "opendental.ui.unknown",
    ]
    assert orjson.loads(publisher.messages[0].body)["type"] == "com.opendental.db.Unknown"


async def test_empty_array_is_fine(client: Client, publisher: InMemoryPublisher) -> None:
    status, _, answer = await post(client, [])
    assert (status, answer) == (200, {"accepted": 0})


async def test_other_methods_and_paths_get_json_errors(client: Client) -> None:
    response = await client.get("/apievents")
    assert response.status == 405
    assert "error" in await response.json()
    response = await client.post("/elsewhere", data=b"[]", headers={"Authorization": TEST_KEY})
    assert response.status == 404
    assert "error" in await response.json()


async def test_health_and_readiness(client: Client, publisher: InMemoryPublisher) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    publisher.fail = True
    not_ready = await client.get("/readyz")
    assert not_ready.status == 503
    assert (await not_ready.json())["broker"] == "disconnected"


async def test_metrics_count_requests(client: Client) -> None:
    await post(client, sample("appointment")["body"], sample("appointment")["headers"])
    await post(client, [], {"Authorization": "bad"})
    text = await (await client.get("/metrics")).text()
    assert (
        'od_bridge_requests_total{customer="main-office",status="200",type="Appointment"} 1.0'
        in text
    )
    assert 'od_bridge_rows_published_total{customer="main-office",type="Appointment"} 2.0' in text
    assert "od_bridge_auth_failures_total 1.0" in text


async def _raw_exchange(client: Client, head: bytes) -> tuple[bytes, asyncio.StreamWriter]:
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(head)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return answer, writer


async def test_expect_100_continue_refuses_a_bad_key_before_the_upload(client: Client) -> None:
    head = (
        b"POST /apievents HTTP/1.1\r\nHost: x\r\nAuthorization: wrong\r\n"
        b"Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
    )
    answer, writer = await _raw_exchange(client, head)
    assert answer.startswith(b"HTTP/1.1 401")
    writer.close()


async def test_expect_100_continue_refuses_an_oversized_body_before_the_upload(
    client: Client,
) -> None:
    head = (
        f"POST /apievents HTTP/1.1\r\nHost: x\r\nAuthorization: {TEST_KEY}\r\n"
        "Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    answer, writer = await _raw_exchange(client, head)
    assert answer.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_expect_100_continue_lets_a_good_request_upload(
    client: Client, publisher: InMemoryPublisher
) -> None:
    body = orjson.dumps(sample("appointment")["body"])
    head = (
        f"POST /apievents HTTP/1.1\r\nHost: x\r\nAuthorization: {TEST_KEY}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(head)
    continue_line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert continue_line.startswith(b"HTTP/1.1 100")
    writer.write(body)
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert final.startswith(b"HTTP/1.1 200")
    assert len(publisher.messages) == 2
    writer.close()


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("RÉCEPTION".encode("cp1252"), "RÉCEPTION"),  # a Windows machine name in its code page
        ("RÉCEPTION".encode(), "RÉCEPTION"),  # UTF-8
        (b"FRONT\xffDESK", "FRONT\xffDESK"),
    ],
)
async def test_a_workstation_header_in_any_encoding_is_accepted(
    client: Client, publisher: InMemoryPublisher, raw: bytes, text: str
) -> None:
    body = orjson.dumps(sample("patient_selected")["body"])
    head = (
        b"POST /apievents HTTP/1.1\r\nHost: x\r\nAuthorization: " + TEST_KEY.encode() + b"\r\n"
        b"Workstation: " + raw + b"\r\nEvent-Type: UiEventType: PatientSelected\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer, writer = await _raw_exchange(client, head)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    (message,) = publisher.messages
    assert orjson.loads(message.body)["odworkstation"] == text
    assert message.routing_key == f"main-office.0.{text}"
