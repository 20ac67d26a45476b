"""Bounded work per request and per sender (issue 13, part 4): rows, values, type names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import body, cli, tail
from bridge.errors import BadRequest, PayloadTooLarge
from bridge.metrics import Metrics
from bridge.publisher import InMemoryPublisher
from bridge.receiver import build_app
from tests.support import TEST_KEY, free_port, make_config

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
AUTH = {"Authorization": TEST_KEY}


async def test_more_rows_than_max_rows_is_a_413_and_nothing_is_published(
    aiohttp_client: MakeClient,
) -> None:
    publisher = InMemoryPublisher()
    client = await aiohttp_client(build_app(make_config(listen={"max_rows": 10}), publisher))
    rows = [{"AptNum": n, "DateTStamp": "2026-11-28 08:00:00"} for n in range(11)]
    response = await client.post("/apievents", data=orjson.dumps(rows), headers=AUTH)
    assert response.status == 413
    assert await response.json() == {"error": "body has more than 10 rows (listen.max_rows)"}
    assert publisher.messages == []
    response = await client.post("/apievents", data=orjson.dumps(rows[:10]), headers=AUTH)
    assert (response.status, await response.json()) == (200, {"accepted": 10})


def test_the_default_row_cap_is_5000() -> None:
    assert make_config().listen.max_rows == 5000


@pytest.mark.parametrize(
    "doc",
    [
        [{"Note": "{" * 50, "AptNum": n} for n in range(10)],  # braces inside strings
        [{"AptNum": n, "Nested": {"a": [{"b": 1}]}} for n in range(10)],  # nested objects
    ],
)
def test_rows_are_counted_exactly_when_the_cheap_bound_says_maybe(doc: list[object]) -> None:
    assert body.parse(orjson.dumps(doc), max_rows=10) == doc
    with pytest.raises(PayloadTooLarge):
        body.parse(orjson.dumps(doc), max_rows=9)


def test_too_many_values_is_refused_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge, match="more than 1000 JSON values"):
        body.parse(orjson.dumps([{"a": list(range(2000))}]), max_rows=10, max_values=1000)
    with pytest.raises(BadRequest, match="not valid UTF-8 JSON"):
        body.parse(b"[" + b"{}," * 20 + b"oops]", max_rows=50, max_values=30)


async def test_made_up_type_names_cannot_grow_exchanges_or_metrics(
    aiohttp_client: MakeClient,
) -> None:
    # Before: 2,000 made-up Event-Type names made 2,000 durable exchanges and grew /metrics
    # from 4 KB to 330 KB.
    publisher = InMemoryPublisher()
    metrics = Metrics()
    client = await aiohttp_client(build_app(make_config(), publisher, metrics))
    row = orjson.dumps([{"Foo": 1}])
    before = len(await (await client.get("/metrics")).read())
    for n in range(2000):
        headers = {**AUTH, "Event-Type": f"WatchTable: Made{n}"}
        assert (await client.post("/apievents", data=row, headers=headers)).status == 200
    for name in ("Appointment", "Patient"):
        headers = {**AUTH, "Event-Type": f"WatchTable: {name}"}
        assert (await client.post("/apievents", data=row, headers=headers)).status == 200
    exchanges = {m.exchange for m in publisher.messages}
    assert len(exchanges) == 100 + 1 + 2  # the first 100 names, the catch-all, two known
    assert "opendental.db.other" in exchanges
    # The real name still travels in the CloudEvent.
    last = orjson.loads(publisher.messages[1999].body)
    assert (publisher.messages[1999].exchange, last["type"]) == (
        "opendental.db.other",
        "com.opendental.db.Made1999",
    )
    page = (await (await client.get("/metrics")).read()).decode()
    assert 'type="other"' in page
    assert 'type="Appointment"' in page
    assert "Made" not in page
    assert len(page) - before < 2000  # a few new series, not one per name


async def test_names_in_allow_unknown_keep_their_exchange_and_label(
    aiohttp_client: MakeClient,
) -> None:
    publisher = InMemoryPublisher()
    config = make_config(customer={"allow_unknown": ["Commlog"]})
    config = config.model_copy(
        update={"amqp": config.amqp.model_copy(update={"max_unknown_types": 0})}
    )
    client = await aiohttp_client(build_app(config, publisher))
    for name in ("Commlog", "Recall"):
        headers = {**AUTH, "Event-Type": f"WatchTable: {name}"}
        assert (await client.post("/apievents", data=b"[{}]", headers=headers)).status == 200
    assert [m.exchange for m in publisher.messages] == [
        "opendental.db.commlog",
        "opendental.db.other",
    ]
    page = (await (await client.get("/metrics")).read()).decode()
    assert 'type="Commlog"' in page
    assert "Recall" not in page


def test_tail_with_an_unknown_type_declares_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: `tail --type Bogus` declared opendental.db.bogus and opendental.ui.bogus.
    # The broker URL is a closed port: reaching it would print "cannot reach RabbitMQ" instead.
    config = tmp_path / "c.yaml"
    config.write_text(
        f"amqp: {{url: 'amqp://guest:guest@127.0.0.1:{free_port()}/'}}\n"
        f"customers: [{{name: a, customer_key: {TEST_KEY}, allow_unknown: [Commlog]}}]\n"
    )
    assert cli.main(["tail", "-c", str(config), "--type", "Patinet"]) == 1
    err = capsys.readouterr().err
    assert "unknown event type 'Patinet' (did you mean 'Patient'?): nothing declared" in err
    assert tail.exchanges("p", ["Commlog", "patient"], ["Commlog"]) == [
        "p.db.commlog",
        "p.ui.commlog",
        "p.db.patient",
    ]
