"""Two bridge replicas on a private 3-node RabbitMQ cluster: node deaths, replica deaths, no loss.

Under a steady load of numbered rows through both replicas, the node each replica is connected
to is SIGKILLed, kept down for DOWN_S and brought back (one replica's node after the other's);
then one replica is stopped and the other SIGKILLed and its stranded spool drained with
`od-bridge spool drain --spool`. Every row answered 200 must arrive in a quorum queue, with few
duplicates, no long stall per replica, and /readyz never saying `connected` while the replica
could not get a publish confirmed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.publisher import declare_event_exchange
from bridge.sync.loop import LeaderLock
from tests import daemon
from tests.rabbit_nodes import RabbitCluster, RabbitNode
from tests.support import TEST_KEY, free_port, sample

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DOWN_S = 32.0  # each killed node stays down this long (the issue asks for ≥ 30 s)
STALL_LIMIT_S = 10.0  # longest time without a confirmed publish per replica
TRUTH_WINDOW_S = 8.0  # `connected` must be followed by a confirmed publish within this
ROWS = 4  # rows per request
PACE_S = 0.05  # one request per replica every PACE_S: ~80 rows/s each
TEMPLATE = sample("appointment")["body"][0]


@dataclass
class Replica:
    """One `od-bridge serve` process and what the test saw of it."""

    name: str
    config: Path
    spool: Path
    port: int
    process: asyncio.subprocess.Process | None = None
    sent: list[tuple[float, int]] = field(default_factory=list)  # (time, AptNum) per row sent
    ok: set[int] = field(default_factory=set)  # AptNums answered 200
    unrouted_ok: set[int] = field(default_factory=set)  # ProvNums (no queue bound) answered 200
    samples: list[tuple[float, bool, float, str]] = field(default_factory=list)
    stopped_at: float = float("inf")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def write_config(replica: Replica, prefix: str, urls: list[str]) -> None:
    replica.config.write_text(
        f"""
listen: {{host: 127.0.0.1, port: {replica.port}, shutdown_grace_s: 0}}
amqp:
  url: {json.dumps(urls)}
  exchange_prefix: {prefix}
  connection_name: {replica.name}
  retry_budget_s: 2.0
  confirm_timeout_s: 3.0
  heartbeat_s: 5
spool: {{path: {replica.spool}}}
customers:
  - {{name: main-office, customer_key: {TEST_KEY}, timezone: America/Chicago}}
sync: {{mode: "off"}}
"""
    )


async def post(session: aiohttp.ClientSession, replica: Replica, rows: Any, kind: str) -> bool:
    headers = {"Authorization": TEST_KEY, "Event-Type": f"WatchTable: {kind}"}
    try:
        async with session.post(
            f"{replica.url}/apievents", data=orjson.dumps(rows), headers=headers
        ) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def load(
    session: aiohttp.ClientSession, replica: Replica, numbers: itertools.count[int]
) -> None:
    """Numbered Appointment rows at a steady pace; every 10th request one Provider row too."""
    loop = asyncio.get_running_loop()
    for request in itertools.count():
        began = loop.time()
        nums = [next(numbers) for _ in range(ROWS)]
        rows = [{**TEMPLATE, "AptNum": n, "DateTStamp": "2026-11-28 08:00:00"} for n in nums]
        replica.sent += [(time.monotonic(), n) for n in nums]
        if await post(session, replica, rows, "Appointment"):
            replica.ok.update(nums)
        if request % 10 == 0:
            provider = nums[0]
            if await post(session, replica, [{"ProvNum": provider, "Abbr": "DOC"}], "Provider"):
                replica.unrouted_ok.add(provider)
        await asyncio.sleep(max(0.0, PACE_S - (loop.time() - began)))  # pacing, not a wait


async def watch(session: aiohttp.ClientSession, replica: Replica) -> None:
    """Sample /readyz and the confirmed-row counters every 0.25 s."""
    while True:
        try:
            async with session.get(f"{replica.url}/readyz") as response:
                state = await response.json()
            async with session.get(f"{replica.url}/metrics") as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return  # the replica is gone
        confirmed = sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name in ("od_bridge_rows_published_total", "od_bridge_rows_drained_total")
        )
        connected = state.get("broker") == "connected"
        replica.samples.append((time.monotonic(), connected, confirmed, state.get("node", "")))
        await asyncio.sleep(0.25)


def node_of(cluster: RabbitCluster, replica: Replica) -> RabbitNode:
    """The node the replica reports it is connected to (its latest /readyz)."""
    address = next(s[3] for s in reversed(replica.samples) if s[3])
    return next(n for n in cluster.nodes if address.endswith(f":{n.port}"))


async def quorum_online(node: RabbitNode, prefix: str, timeout: float = 120) -> None:
    """Wait until every quorum queue of `prefix` has all 3 members online again."""

    def check() -> bool:
        rows = json.loads(node.ctl("list_queues", "name", "type", "online", "--formatter", "json"))
        mine = [r for r in rows if r["name"].startswith(prefix) and r["type"] == "quorum"]
        return len(mine) == 2 and all(len(r["online"]) == 3 for r in mine)

    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "quorum queues did not get their members back"
        await asyncio.sleep(0.5)


async def kill_node_under(
    cluster: RabbitCluster, replica: Replica, prefix: str, phases: list[dict[str, Any]]
) -> None:
    node = node_of(cluster, replica)
    began = time.monotonic()
    await asyncio.to_thread(node.kill)
    await asyncio.sleep(DOWN_S)  # the fault's duration, not a wait for an event
    await asyncio.to_thread(node.start)
    survivor = next(n for n in cluster.nodes if n is not node)
    await quorum_online(survivor, prefix)
    phases.append(
        {"fault": f"kill -9 {node.name} (under {replica.name})", "span": (began, time.monotonic())}
    )


async def drain_queue(url: str, queue: str) -> list[str]:
    """Every message id in `queue`, reading until it has been idle for 3 s."""
    ids: list[str] = []
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        declared = await channel.declare_queue(queue, passive=True)
        async with declared.iterator() as messages:
            while True:
                try:
                    message = await asyncio.wait_for(messages.__anext__(), 3.0)
                except TimeoutError:
                    break
                ids.append(orjson.loads(message.body)["subject"])
                await message.ack()
    return ids


def longest_stall(replica: Replica, start: float, end: float) -> float:
    """Longest time within [start, end] without the replica's confirmed count going up."""
    last, previous, worst = start, None, 0.0
    for t, _, confirmed, _ in replica.samples:
        if t < start or t > end:
            continue
        if previous is not None and confirmed > previous:
            worst = max(worst, t - last)
            last = t
        previous = confirmed
    return max(worst, min(end, replica.samples[-1][0]) - last)


def false_connected(replica: Replica) -> list[float]:
    """Times /readyz said `connected` with no confirmed publish in the TRUTH_WINDOW_S after."""
    bad = []
    samples = replica.samples
    for i, (t, connected, confirmed, _) in enumerate(samples):
        if not connected or t + TRUTH_WINDOW_S > min(replica.stopped_at, samples[-1][0]):
            continue
        if not any(c > confirmed for u, _, c, _ in samples[i + 1 :] if u <= t + TRUTH_WINDOW_S):
            bad.append(t)
    return bad


async def test_two_replicas_ride_out_node_and_replica_deaths(
    rabbit_cluster: RabbitCluster, tmp_path: Path
) -> None:
    cluster = rabbit_cluster
    prefix = f"c{uuid.uuid4().hex[:8]}"
    consumer_queue = f"{prefix}.consumer"
    connection = await aio_pika.connect(cluster.urls[0])
    async with connection:
        channel = await connection.channel()
        exchange = await declare_event_exchange(channel, prefix, f"{prefix}.db.appointment")
        queue = await channel.declare_queue(
            consumer_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="#")

    replicas = [
        Replica(name, tmp_path / f"{name}.yaml", tmp_path / f"{name}.sqlite3", free_port())
        for name in ("replica-a", "replica-b")
    ]
    for replica in replicas:
        write_config(replica, prefix, cluster.urls)
        replica.process = await daemon.serve(replica.config)
    numbers = itertools.count(1)
    phases: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        watchers = [asyncio.create_task(watch(session, r)) for r in replicas]
        loads = {r.name: asyncio.create_task(load(session, r, numbers)) for r in replicas}
        try:
            await asyncio.sleep(3)  # steady load before the first fault
            began = time.monotonic()
            for replica in replicas:
                await kill_node_under(cluster, replica, prefix, phases)
            await asyncio.sleep(3)
            a, b = replicas
            assert a.process is not None and b.process is not None
            t = time.monotonic()
            loads[a.name].cancel()
            a.stopped_at = t
            assert await daemon.stop(a.process) == 0  # graceful: drains, then exits
            phases.append({"fault": "stop replica-a (SIGTERM)", "span": (t, time.monotonic())})
            await asyncio.sleep(2)
            t = time.monotonic()
            b.stopped_at = t
            await daemon.stop(b.process, signal.SIGKILL)  # mid-load, with whatever it holds
            loads[b.name].cancel()
            phases.append({"fault": "kill -9 replica-b", "span": (t, time.monotonic())})
        finally:
            for task in [*loads.values(), *watchers]:
                task.cancel()
            await asyncio.gather(*loads.values(), *watchers, return_exceptions=True)
            for replica in replicas:
                if replica.process is not None and replica.process.returncode is None:
                    replica.process.kill()
                    await replica.process.wait()

    # A replica that could reach no node spooled what it answered 200, then died: its spool is
    # stranded. Like the killed replica-b's, it is delivered by `spool drain --spool` from its
    # file, with the cluster's configuration (replica-b's).
    c = Replica("replica-c", tmp_path / "replica-c.yaml", tmp_path / "c.sqlite3", free_port())
    write_config(c, prefix, [f"amqp://guest:guest@127.0.0.1:{free_port()}/"])  # nobody there
    c.process = await daemon.serve(c.config)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        for _ in range(10):
            nums = [next(numbers) for _ in range(ROWS)]
            rows = [{**TEMPLATE, "AptNum": n, "DateTStamp": "2026-11-28 08:00:00"} for n in nums]
            c.sent += [(time.monotonic(), n) for n in nums]
            if await post(session, c, rows, "Appointment"):
                c.ok.update(nums)
    await daemon.stop(c.process, signal.SIGKILL)
    assert len(c.ok) == 10 * ROWS  # spooled, answered 200
    replicas.append(c)
    drained = []
    for stranded in (b, c):
        drain = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "spool", "drain", "-c", str(b.config),
            "--spool", str(stranded.spool), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(drain.communicate(), 120)
        assert drain.returncode == 0, err.decode()
        drained.append(f"{stranded.name}: {out.decode().strip()}")

    arrived = await drain_queue(cluster.urls[1], consumer_queue)
    unrouted = await drain_queue(cluster.urls[2], f"{prefix}.unrouted")
    info = json.loads(cluster.nodes[0].ctl("list_queues", "name", "type", "--formatter", "json"))
    types = {r["name"]: r["type"] for r in info}

    seen = [int(s.split("/")[1]) for s in arrived]
    unique = set(seen)
    answered = set().union(*(r.ok for r in replicas))
    sent = sum(len(r.sent) for r in replicas)
    report = []
    for phase in phases:
        start, end = phase["span"]
        rows = {n for r in replicas for t, n in r.sent if start <= t <= end}
        ok = rows & answered
        stalls = {
            r.name: round(longest_stall(r, start, min(end, r.stopped_at)), 2)
            for r in replicas
            if start < r.stopped_at and r.samples
        }
        report.append(
            {
                "fault": phase["fault"],
                "sent": len(rows),
                "200": len(ok),
                "arrived": len(ok & unique),
                "duplicates": sum(1 for n in seen if n in rows) - len(rows & unique),
                "longest stall s": stalls,
            }
        )
    summary = {
        "rows sent": sent,
        "answered 200": len(answered),
        "arrived": len(answered & unique),
        "duplicates": len(seen) - len(unique),
        "unrouted 200 / arrived": (
            len(set().union(*(r.unrouted_ok for r in replicas))),
            len({int(s.split("/")[1]) for s in unrouted}),
        ),
        "stranded spools drained": drained,
        "faults": report,
    }
    print(json.dumps(summary, indent=1))  # the figures the closing note asks for

    assert answered - unique == set(), "rows answered 200 did not arrive"
    assert len(seen) - len(unique) <= 0.02 * len(answered), "more than 2 % duplicates"
    assert types[f"{prefix}.unrouted"] == "quorum"
    assert types[consumer_queue] == "quorum"
    unrouted_ok = set().union(*(r.unrouted_ok for r in replicas))
    assert unrouted_ok - {int(s.split("/")[1]) for s in unrouted} == set()
    for replica in replicas[:2]:  # the two under load through the faults
        stall = longest_stall(replica, began, replica.stopped_at)
        assert stall <= STALL_LIMIT_S, f"{replica.name} confirmed nothing for {stall:.1f} s"
        assert false_connected(replica) == [], f"{replica.name}: /readyz said connected falsely"
    async with await aio_pika.connect(cluster.urls[0]) as cleanup:
        channel = await cleanup.channel()
        for name in (consumer_queue, f"{prefix}.unrouted"):
            await channel.queue_delete(name)


async def test_the_syncer_lock_hands_over_when_the_leaders_node_dies(
    rabbit_cluster: RabbitCluster,
) -> None:
    queue = f"c{uuid.uuid4().hex[:8]}.syncer.lock"
    first = LeaderLock(rabbit_cluster.urls, queue, timeout_s=5, name="replica-a syncer lock")
    second = LeaderLock(rabbit_cluster.urls, queue, timeout_s=5, name="replica-b syncer lock")
    try:
        assert await first.acquire() is True
        assert await second.acquire() is False  # one leader at a time, whatever node each uses
        assert first._conn is not None
        port = first._conn.url.port
        node = next(n for n in rabbit_cluster.nodes if n.port == port)
        await asyncio.to_thread(node.kill)
        try:
            deadline = time.monotonic() + 30
            while not await second.acquire():  # the follower competes again each pass
                assert time.monotonic() < deadline, "the lock was not handed over"
                await asyncio.sleep(0.5)
            # The old leader knows it lost the lock, although aio-pika's is_closed says no.
            assert first.held is False
            # Then one leader, the same pass after pass. Usually the new one; but RabbitMQ 3.10
            # may delete the new leader's queue by name just after the node died (see
            # LeaderLock._still_ours) and the old one wins it back: the re-check settles it.
            passes = [(await first.acquire(), await second.acquire()) for _ in range(2)]
            while passes[-1] != passes[-2] or sum(passes[-1]) != 1:
                assert len(passes) < 10, f"the lock never settled on one leader: {passes}"
                passes.append((await first.acquire(), await second.acquire()))
        finally:
            await asyncio.to_thread(node.start)
    finally:
        await first.release()
        await second.release()
