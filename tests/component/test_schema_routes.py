"""GET /schemas/…: the daemon serves the shipped schemas that every message's dataschema names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from bridge import contract
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, all_samples, make_config, sample

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


async def check(client: Client, body: dict[str, Any], normalized: bool) -> str:
    """Fetch the schema the message names from the daemon and validate `data`; its path."""
    prefix = "http://127.0.0.1:8080/schemas/v1/"  # public_url's default
    assert body["dataschema"].startswith(prefix if normalized else f"{prefix}raw/")
    path: str = body["dataschema"].removeprefix("http://127.0.0.1:8080")
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "application/schema+json"
    schema = orjson.loads(await response.read())
    Draft202012Validator(schema).validate(body["data"])
    return path


async def test_every_published_message_validates_against_the_schema_the_daemon_serves(
    aiohttp_client: MakeClient,
) -> None:
    served: set[str] = set()
    for normalized in (True, False):
        publisher = InMemoryPublisher()
        config = make_config(customer={"normalize": normalized})
        client = await aiohttp_client(build_app(config, publisher))
        for name in all_samples():
            delivery = sample(name)
            headers = {**delivery["headers"], "Authorization": TEST_KEY}
            data = orjson.dumps(delivery["body"])
            assert (await client.post("/apievents", data=data, headers=headers)).status == 200
        assert len(publisher.messages) == 11
        for message in publisher.messages:
            served.add(await check(client, orjson.loads(message.body), normalized))
    assert len(served) == 2 * 9  # nine types among the ten samples (legacy is Appointment)


async def test_latest_version_missing_files_and_methods(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(build_app(make_config(), InMemoryPublisher()))
    latest = await client.get("/schemas/appointment.json")
    v1 = await client.get("/schemas/v1/appointment.json")
    assert latest.status == v1.status == 200
    assert await latest.read() == await v1.read() == contract.shipped("v1/appointment.json")
    for missing in ("/schemas/v1/nope.json", "/schemas/v9/appointment.json", "/schemas/x.yaml"):
        assert (await client.get(missing)).status == 404
    assert (await client.get("/schemas/..%2Fpyproject.json")).status == 404
    assert (await client.post("/schemas/v1/appointment.json")).status == 405
