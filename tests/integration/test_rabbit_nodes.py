"""The private RabbitMQ nodes that destructive tests use: they serve, crash, restart and cluster."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from tests.rabbit_nodes import RabbitCluster, RabbitNode

pytestmark = pytest.mark.integration


async def roundtrip(url: str) -> bytes:
    """Publish one message to a fresh queue and get it back."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ping"), queue.name)
        message = await queue.get(timeout=10)
        assert message is not None
        return message.body


async def test_a_killed_node_comes_back_as_a_new_process(private_rabbit: RabbitNode) -> None:
    before = private_rabbit.pid()
    assert before is not None
    await asyncio.to_thread(private_rabbit.kill)
    assert private_rabbit.pid() is None
    await asyncio.to_thread(private_rabbit.start)
    assert private_rabbit.pid() not in (None, before)
    assert await roundtrip(private_rabbit.url) == b"ping"


def test_a_node_has_its_own_limits(private_rabbit: RabbitNode) -> None:
    limit = private_rabbit.ctl("-q", "eval", "vm_memory_monitor:get_memory_limit().")
    assert int(limit) == private_rabbit.cluster.memory_limit
    listeners = private_rabbit.ctl("-q", "eval", "rabbit_networking:active_listeners().")
    assert "{127,0,0,1}" in listeners and "{0,0,0,0}" not in listeners


async def test_three_nodes_form_one_cluster(rabbit_cluster: RabbitCluster) -> None:
    status = json.loads(rabbit_cluster.nodes[2].ctl("-q", "cluster_status", "--formatter", "json"))
    assert sorted(status["running_nodes"]) == sorted(n.name for n in rabbit_cluster.nodes)
    assert len(set(rabbit_cluster.urls)) == 3
    for url in rabbit_cluster.urls:
        assert await roundtrip(url) == b"ping"
