"""No PHI and no key in the logs: every sample through every path, captured at DEBUG."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp
import orjson
import pytest

from bridge import log as logsetup
from bridge.config import Amqp
from bridge.events import Message
from bridge.publisher import AmqpPublisher, InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, all_samples, body_bytes, make_config, sample

LOCKED_KEY = "LockedCustomerKey9"
AMQP_PASSWORD = "amqpS3cretPw"
DEVELOPER_KEY = "NFF6i0KrXrxDkZHt"
PHI_FIELDS = (
    "LName", "FName", "Preferred", "Birthdate", "SSN", "Address", "City", "Zip", "HmPhone",
    "WirelessPhone", "Email", "ImageFolder", "Note", "MedicaidID", "ChartNumber",
)  # fmt: skip


def phi_values() -> set[str]:
    """Every non-trivial value of a PHI field in the samples (names, SSN, birthdate, …)."""
    found: set[str] = set()
    for delivery in map(sample, all_samples()):
        body = delivery["body"]
        for row in body if isinstance(body, list) else [body]:
            for field in PHI_FIELDS:
                value = row.get(field)
                if isinstance(value, str) and len(value) >= 3 and value != "0001-01-01":
                    found.add(value)
    # Pieces that could show up on their own (a phone number without its area code).
    found |= {"555-0100", "555-0101", "jane@example"}
    return found


SECRETS = {TEST_KEY, TEST_KEY + "x", TEST_KEY[:-1], LOCKED_KEY, AMQP_PASSWORD, DEVELOPER_KEY}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged, as production formats it: JSON (via log.configure) and text."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    quiet = {n: logging.getLogger(n).level for n in ("aiormq", "aio_pika", "aiohttp.access")}
    buf = io.StringIO()
    logsetup.configure("DEBUG", "json", stream=buf)
    text = logging.StreamHandler(buf)
    text.setFormatter(logsetup.TextFormatter())
    text.addFilter(logsetup.LibraryArguments())  # as configure() sets up every handler
    root.addHandler(text)
    try:
        yield buf
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


def _config(**listen: Any) -> Any:
    config = make_config(listen={"max_body_bytes": 4096, **listen})
    # A second customer that may only post from a network we are not on (403 path).
    locked = config.customers[0].model_copy(
        update={
            "name": "locked-office",
            "customer_key": __import__("pydantic").SecretStr(LOCKED_KEY),
            "allowed_networks": ("192.0.2.0/24",),
        }
    )
    return config.model_copy(update={"customers": (*config.customers, locked)})


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 512):
        yield data[i : i + 512]


async def _every_path(client: Any, publisher: InMemoryPublisher) -> set[int]:
    """Post every sample through every path; return the statuses seen."""
    statuses: set[int] = set()

    async def post(data: Any, headers: dict[str, str], **kw: Any) -> None:
        resp = await client.post("/apievents", data=data, headers=headers, **kw)
        await resp.read()
        statuses.add(resp.status)

    for name in all_samples():
        delivery = sample(name)
        headers = {**delivery["headers"], "X-Request-Id": f"t-{name}"}
        body = body_bytes(delivery)
        bad = {k: v for k, v in headers.items() if k != "Authorization"}
        await post(body, headers)  # 200
        await post(body, headers, expect100=True)  # 200 after 100-continue
        await post(body[:-2], headers)  # 400: broken JSON full of PHI
        await post(json.dumps([json.dumps(delivery["body"])]).encode(), headers)  # 400: shape
        await post(body, bad)  # 401: no key
        for wrong in (TEST_KEY + "x", TEST_KEY[:-1], f"ODFHIR {DEVELOPER_KEY}/{TEST_KEY}"):
            await post(body, {**bad, "Authorization": wrong})  # 401
            await post(body, {**bad, "Authorization": wrong}, expect100=True)  # 401 early
        await post(body, {**bad, "Authorization": LOCKED_KEY})  # 403
        padded = body + b" " * 4096
        await post(padded, headers)  # 413 from Content-Length
        await post(_chunks(padded), headers)  # 413 while reading a chunked body
        publisher.fail = True
        await post(body, headers)  # 503: broker down
        publisher.fail = False
    return statuses


def _assert_clean(text: str) -> None:
    assert text.strip(), "nothing was logged"
    leaked = sorted(v for v in phi_values() | SECRETS if v in text)
    assert leaked == [], f"logged: {leaked}"


async def test_no_phi_or_key_in_logs_on_any_path(
    aiohttp_client: Any, captured: io.StringIO
) -> None:
    publisher = InMemoryPublisher()
    client = await aiohttp_client(build_app(_config(), publisher))
    statuses = await _every_path(client, publisher)
    assert statuses == {200, 400, 401, 403, 413, 503}

    # 429: a client that keeps guessing.
    limited = await aiohttp_client(
        build_app(_config(auth_failure_limit={"max_failures": 2}), InMemoryPublisher())
    )
    for _ in range(4):
        resp = await limited.post("/apievents", data=b"[]", headers={"Authorization": TEST_KEY[1:]})
        statuses.add(resp.status)
    assert 429 in statuses

    text = captured.getvalue()
    _assert_clean(text)
    # The paths were really logged, each line tied to its request.
    records = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    refused = {r["status"] for r in records if r["msg"] == "request refused"}
    assert refused == {400, 401, 403, 413, 429, 503}
    accepted = [r for r in records if r["msg"] == "request accepted"]
    assert {r["request_id"] for r in accepted} == {f"t-{n}" for n in all_samples()}
    assert all("request_id" in r for r in records if r["logger"] == "od_bridge.receiver")
    assert "request_id=t-patient " in text  # the text format carries it too


async def test_no_secret_in_logs_when_the_real_broker_is_unreachable(
    aiohttp_client: Any, captured: io.StringIO
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    amqp = Amqp(url=f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{port}/", retry_budget_s=0.05)
    publisher = AmqpPublisher(amqp)
    await publisher.start(wait=False)
    try:
        client = await aiohttp_client(build_app(_config(), publisher))
        for delivery in map(sample, all_samples()):
            resp = await client.post(
                "/apievents", data=body_bytes(delivery), headers=delivery["headers"]
            )
            assert resp.status == 503
            assert resp.headers["Retry-After"]
    finally:
        await publisher.close()
    _assert_clean(captured.getvalue())
    assert "request refused" in captured.getvalue()


def test_the_check_itself_finds_a_leak() -> None:
    with pytest.raises(AssertionError):
        _assert_clean('{"msg": "oops", "ssn": "000000000"}')
    with pytest.raises(AssertionError):
        _assert_clean(f"x Authorization={TEST_KEY}")


async def test_client_errors_reach_no_log_either(captured: io.StringIO) -> None:
    # aiohttp's own loggers (server, access, client) at DEBUG must not echo a header or body.
    app = build_app(_config(), InMemoryPublisher())
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for delivery in map(sample, all_samples()):
                async with session.post(
                    f"http://127.0.0.1:{port}/apievents",
                    data=body_bytes(delivery),
                    headers=delivery["headers"],
                ) as resp:
                    assert resp.status == 200
    finally:
        await runner.cleanup()
    _assert_clean(captured.getvalue())


def test_a_library_logging_a_message_object_logs_no_body(captured: io.StringIO) -> None:
    # aiormq logs a returned message it cannot match with "%r" (the repr holds the body).
    class Delivered:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def __repr__(self) -> str:
            return f"<DeliveredMessage body={self.body!r}>"

    body = body_bytes(sample("patient_selected"))
    logging.getLogger("aiormq.channel").error("Unhandled message %r returning", Delivered(body))
    logging.getLogger("aiormq.connection").warning("Server said %s (%d)", "NOT_FOUND", 404)
    text = captured.getvalue()
    _assert_clean(text)
    assert "Unhandled message '<Delivered>' returning" in text
    assert "Server said NOT_FOUND (404)" in text  # plain arguments are kept


class BuggyPublisher(InMemoryPublisher):
    """A bug deep in the publish path whose exception message and locals hold a row (PHI)."""

    async def publish(self, messages: Sequence[Message]) -> bool:
        rows = [orjson.loads(m.body)["data"] for m in messages]  # a local full of PHI
        try:
            return {}[rows[0]["LName"]]  # type: ignore[no-any-return]
        except KeyError as exc:
            raise ValueError(f"cannot publish {rows!r}") from exc


async def test_an_error_line_carries_frames_not_the_message(
    aiohttp_client: Any, captured: io.StringIO
) -> None:
    client = await aiohttp_client(build_app(_config(), BuggyPublisher()))
    patient = sample("patient")
    resp = await client.post("/apievents", data=body_bytes(patient), headers=patient["headers"])
    assert resp.status == 500
    text = captured.getvalue()
    _assert_clean(text)  # neither the message nor the locals of either exception
    [line] = [orjson.loads(x) for x in text.splitlines() if '"unexpected error"' in x]
    assert line["level"] == "error" and line["error"] == "ValueError"
    # Outermost first, each `file:line function`, from the receiver down to the raise.
    assert all(re.fullmatch(r"[\w/.-]+\.py:\d+ [\w<>]+", frame) for frame in line["stack"])
    assert line["stack"][0].startswith("bridge/webhook.py:")
    assert re.fullmatch(r"tests/component/test_logs_phi\.py:\d+ publish", line["stack"][-1])
    [cause] = line["causes"]  # what it was raised from, the same way
    assert cause["error"] == "KeyError"
    assert re.fullmatch(r"tests/component/test_logs_phi\.py:\d+ publish", cause["stack"][-1])
    # The text format: the class and the frames on the same line.
    [human] = [x for x in text.splitlines() if "unexpected error" in x and not x.startswith("{")]
    assert "error=ValueError stack=bridge/webhook.py:" in human
