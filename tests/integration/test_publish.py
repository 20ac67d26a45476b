"""The core pipeline against a real RabbitMQ: exchanges, routing keys, properties, order."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event
from pydantic import SecretStr

from bridge.broker import where
from bridge.errors import PublishError
from bridge.events import Message
from bridge.publisher import AmqpPublisher
from bridge.topology import UnroutedTypeMismatch
from tests.support import (
    AMQP_URL,
    TEST_KEY,
    all_samples,
    assert_path,
    free_port,
    make_config,
    sample,
)

pytestmark = pytest.mark.integration


async def post(url: str, body: Any, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
            await response.read()
            return response.status


@pytest.mark.parametrize("name", all_samples())
async def test_each_sample_lands_on_its_exchange(
    bridge: str, prefix: str, consume: Any, name: str
) -> None:
    delivery = sample(name)
    body, headers = delivery["body"], delivery["headers"]
    rows = body if isinstance(body, list) else [body]
    kind, table = {
        "appointment_deleted": ("db", "appointmentdeleted"),
        "legacy_appointment_no_headers": ("db", "appointment"),
        "patient_selected": ("ui", "patientselected"),
    }.get(name, ("db", name))
    collector = await consume(f"{prefix}.{kind}.{table}", "#")
    assert await post(bridge, body, headers) == 200
    messages = await collector.wait_for(len(rows))
    workstation = headers.get("Workstation", "_")
    for message, row in zip(messages, rows, strict=True):
        assert message.routing_key == f"main-office.0.{workstation}"
        assert message.delivery_mode == 2  # persistent
        assert message.content_type == "application/cloudevents+json"
        assert message.app_id == "od-bridge"
        assert message.timestamp is not None
        event = from_rabbitmq_event(
            RabbitMQMessage(headers={}, content_type=message.content_type, body=message.body)
        )
        assert message.message_id == event.get_id()
        assert message.type == event.get_type()
        assert event.get_extension("odcustomer") == "main-office"
        assert list(event.get_data()) == list(row)


async def test_1000_rows_give_1000_messages_in_order(
    bridge: str, prefix: str, consume: Any
) -> None:
    collector = await consume(f"{prefix}.db.appointment", "main-office.#")
    template = sample("appointment")["body"][0]
    rows = [{**template, "AptNum": n, "DateTStamp": "2026-11-28 08:00:00"} for n in range(1000)]
    assert await post(bridge, rows, {"Authorization": TEST_KEY}) == 200
    messages = await collector.wait_for(1000)
    assert [orjson.loads(m.body)["data"]["AptNum"] for m in messages] == list(range(1000))
    assert len({m.message_id for m in messages}) == 1000


async def test_an_event_nobody_binds_ends_up_in_unrouted(
    bridge: str, prefix: str, consume: Any
) -> None:
    unrouted = await consume.queue(f"{prefix}.unrouted")
    delivery = sample("provider")
    assert await post(bridge, delivery["body"], delivery["headers"]) == 200
    [message] = await unrouted.wait_for(1)
    assert orjson.loads(message.body)["type"] == "com.opendental.db.Provider"
    assert message.exchange == f"{prefix}.db.provider"


async def test_metrics_show_the_unrouted_backlog(bridge: str) -> None:
    delivery = sample("operatory")
    assert await post(bridge, delivery["body"], delivery["headers"]) == 200
    metrics_url = bridge.replace("/apievents", "/metrics")
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    assert "od_bridge_unrouted_depth 1.0" in text  # confirmed ⇒ already queued there
    assert "od_bridge_broker_connected 1.0" in text


async def test_a_wrong_key_publishes_nothing(bridge: str, prefix: str, consume: Any) -> None:
    collector = await consume(f"{prefix}.db.appointment", "#")
    delivery = sample("appointment")
    assert (
        await post(bridge, delivery["body"], {**delivery["headers"], "Authorization": "x"}) == 401
    )
    assert await post(bridge, [{"Oops": 1}], {"Authorization": TEST_KEY}) == 200
    assert await post(bridge, delivery["body"], delivery["headers"]) == 200
    # the queue is FIFO: had the refused request published anything, it would come first
    messages = await collector.wait_for(2)
    assert [orjson.loads(m.body)["subject"] for m in messages] == [
        "Appointment/18",
        "Appointment/19",
    ]


async def test_an_unknown_table_gets_its_own_exchange(
    bridge: str, prefix: str, consume: Any
) -> None:
    collector = await consume(f"{prefix}.db.commlog", "#")
    headers = {"Authorization": TEST_KEY, "Event-Type": "WatchTable: Commlog"}
    rows = [{"CommlogNum": 5, "PatNum": 17, "DateTStamp": "2026-11-28 08:00:00"}]
    assert await post(bridge, rows, headers) == 200
    [message] = await collector.wait_for(1)
    event = orjson.loads(message.body)
    assert event["type"] == "com.opendental.db.Commlog"
    assert event["subject"] == "Commlog/5"


async def declare_unrouted(prefix: str, *, max_length: int, queue_type: str) -> None:
    """Declare `{prefix}.unrouted` durable with these arguments, on a connection of its own."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.declare_queue(
            f"{prefix}.unrouted",
            durable=True,
            arguments={"x-max-length": max_length, "x-queue-type": queue_type},
        )


async def test_a_clashing_unrouted_queue_is_a_clear_error(
    prefix: str, caplog: pytest.LogCaptureFixture, publish_path: str
) -> None:
    await declare_unrouted(prefix, max_length=7, queue_type="quorum")
    publisher = AmqpPublisher(make_config(prefix).amqp)
    with pytest.raises(PublishError, match="ChannelPreconditionFailed"):
        await publisher.start(wait=True)
    assert "RabbitMQ refused the topology" in caplog.text
    await publisher.close()


@pytest.mark.parametrize(("existing", "wanted"), [("classic", "quorum"), ("quorum", "classic")])
async def test_an_unrouted_queue_of_the_other_type_stops_the_start(
    prefix: str, existing: str, wanted: str
) -> None:
    await declare_unrouted(prefix, max_length=100_000, queue_type=existing)
    settings = make_config(prefix).amqp.model_copy(update={"unrouted_queue_type": wanted})
    publisher = AmqpPublisher(settings)
    with pytest.raises(UnroutedTypeMismatch, match=f"exists as a {existing} queue.*migrate"):
        await publisher.start(wait=False)  # even when the broker may come later: a config error
    await publisher.close()


async def test_the_unrouted_queue_is_a_quorum_queue_by_default(bridge: str, prefix: str) -> None:
    # Declaring it as a quorum queue passively-equivalent succeeds only if it is one.
    await declare_unrouted(prefix, max_length=100_000, queue_type="quorum")


async def test_a_clashing_exchange_for_a_new_type_is_a_clear_error_logged_once(
    prefix: str, caplog: pytest.LogCaptureFixture, publish_path: str
) -> None:
    name = f"{prefix}.db.commlog"  # not declared at startup: Commlog is not a known table
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
        publisher = AmqpPublisher(make_config(prefix, amqp={"retry_budget_s": 0.3}).amqp)
        await publisher.start(wait=True)
        assert_path(publisher, publish_path)
        try:
            message = Message(name, "k", "id-1", "com.opendental.db.Commlog", 1, b"{}")
            for _ in range(2):
                with pytest.raises(PublishError):
                    await publisher.publish([message])
            refusals = [r for r in caplog.records if "refused to declare" in r.getMessage()]
            assert [getattr(r, "exchange", None) for r in refusals] == [name]
            assert publisher.ready  # the publishing channel came back for everything else
        finally:
            await publisher.close()
        await channel.exchange_delete(name)


async def test_a_dead_node_in_the_url_list_is_skipped(prefix: str) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    settings = make_config(prefix).amqp.model_copy(
        update={"url": (SecretStr(dead), SecretStr(AMQP_URL))}
    )
    publisher = AmqpPublisher(settings)
    publisher._urls = [dead, AMQP_URL]  # not shuffled: the dead node first
    await publisher.start(wait=True)
    try:
        assert publisher.node == where(AMQP_URL)
        message = Message(f"{prefix}.db.appointment", "k", "id-1", "com.opendental.db.X", 1, b"{}")
        assert await publisher.publish([message]) is True
    finally:
        await publisher.close()


async def test_an_unavailable_unrouted_queue_never_blocks_publishing(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Another connection holds an exclusive queue of that name: declaring it fails (locked),
    # as it does on a cluster while a classic queue's home node is down.
    holder = await aio_pika.connect(AMQP_URL)
    channel = await holder.channel()
    await channel.declare_queue(f"{prefix}.unrouted", exclusive=True)
    publisher = AmqpPublisher(make_config(prefix).amqp)
    await publisher.start(wait=True)  # connected all the same
    try:
        assert "the unrouted queue is unavailable" in caplog.text
        message = Message(f"{prefix}.db.appointment", "k", "id-1", "com.opendental.db.X", 1, b"{}")
        probe = await channel.declare_queue(exclusive=True)
        await probe.bind(f"{prefix}.db.appointment", routing_key="#")
        assert await publisher.publish([message]) is True
        await holder.close()  # the queue comes back: the bridge declares it in the background
        assert publisher._unrouted is not None
        await asyncio.wait_for(asyncio.shield(publisher._unrouted), 30)  # it ends once declared
        async with await aio_pika.connect(AMQP_URL) as connection:
            check = await connection.channel()
            await check.declare_queue(f"{prefix}.unrouted", passive=True)  # there again
    finally:
        await publisher.close()
        if not holder.is_closed:
            await holder.close()
