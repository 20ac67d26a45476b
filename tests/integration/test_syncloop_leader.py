"""SyncLoop with real RabbitMQ: one leader applies, followers only plan, takeover on death."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.config import Config
from bridge.config_loader import parse
from bridge.emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY, Emulator, Settings
from bridge.sync.loop import LeaderLock, SyncLoop, SyncResult
from tests.support import AMQP_URL as AMQP

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("need_broker")]


@pytest.fixture
def lock_name() -> str:
    # Unique per test; exclusive queues vanish with their connection.
    return f"test.syncer.lock.{uuid.uuid4().hex[:12]}"


def config_for(base: str, mode: str, tmp_path: Path) -> Config:
    return parse(
        f"""
amqp: {{url: "{AMQP}"}}
customers:
  - name: main-office
    customer_key: {DOC_CUSTOMER_KEY}
    api: {{url: "{base}", developer_key: {DOC_DEVELOPER_KEY}}}
    subscriptions:
      - {{watch_table: Appointment, polling_seconds: 30}}
sync: {{mode: {mode}, interval_s: 1}}
""",
        env={},
    )


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Emulator, str]]:
    emu = Emulator(Settings())
    async with emu.serve() as base:
        yield emu, base


async def test_exclusive_queue_has_one_holder_and_is_taken_over(lock_name: str) -> None:
    first, second = LeaderLock(AMQP, lock_name), LeaderLock(AMQP, lock_name)
    try:
        assert await first.acquire() is True
        assert await first.acquire() is True  # still ours
        assert await second.acquire() is False
        # The leader's connection dies (crash, network): the broker frees the queue.
        assert first._conn is not None
        await first._conn.close()
        assert first.held is False
        assert await second.acquire() is True
        assert await first.acquire() is False
    finally:
        await first.release()
        await second.release()


async def test_a_leader_whose_queue_vanished_gives_the_lock_up(lock_name: str) -> None:
    # What RabbitMQ 3.10 can do after a node dies: the record of the lock queue is deleted
    # under its holder, whose connection stays open. Here the holder deletes it itself.
    first, second = LeaderLock(AMQP, lock_name), LeaderLock(AMQP, lock_name)
    try:
        assert await first.acquire() is True
        assert first._conn is not None
        channel = await first._conn.channel()
        await channel.queue_delete(lock_name)
        assert first.held is True  # the connection alone cannot tell
        assert await second.acquire() is True
        assert await first.acquire() is False  # the broker says RESOURCE_LOCKED: not ours
        assert await second.acquire() is True
    finally:
        await first.release()
        await second.release()


async def test_only_the_leader_applies(
    emulator: tuple[Emulator, str], lock_name: str, tmp_path: Path
) -> None:
    emu, base = emulator
    config = config_for(base, "apply", tmp_path)
    seen: list[tuple[str, bool, int]] = []

    def count(result: SyncResult, leader: bool) -> None:
        seen.append((result.customer, leader, len(result.plan.pending) if result.plan else -1))

    holder = LeaderLock(AMQP, lock_name)
    assert await holder.acquire()
    follower = SyncLoop(config, lock_queue=lock_name, on_result=count)
    try:
        (result,) = await follower.run_once()
        assert not result.applied and len(result.plan.pending) == 1  # type: ignore[union-attr]
        assert emu.subs.items == {}
        await holder.release()  # the leader goes away
        (result,) = await follower.run_once()
        assert result.applied and all(o.ok for o in result.outcomes)
        assert len(emu.subs.items) == 1
        (result,) = await follower.run_once()
        assert result.plan is not None and result.plan.pending == ()
        assert seen == [
            ("main-office", False, 1),
            ("main-office", True, 1),
            ("main-office", True, 0),
        ]
    finally:
        await follower.aclose()
        await holder.release()


async def test_plan_mode_never_applies_and_off_does_nothing(
    emulator: tuple[Emulator, str], lock_name: str, tmp_path: Path
) -> None:
    emu, base = emulator
    planner = SyncLoop(config_for(base, "plan", tmp_path), lock_queue=lock_name)
    idle = SyncLoop(config_for(base, "off", tmp_path), lock_queue=lock_name)
    try:
        (result,) = await planner.run_once()
        assert not result.applied and emu.subs.items == {}
        assert planner.lock is not None and not planner.lock.held  # plan mode never takes the lock
        assert await idle.run_once() == []
        assert emu.gate.calls == 1
    finally:
        await planner.aclose()
        await idle.aclose()


async def test_run_loops_until_stopped(
    emulator: tuple[Emulator, str], lock_name: str, tmp_path: Path
) -> None:
    emu, base = emulator
    applied = asyncio.Event()
    stop = asyncio.Event()

    def on_result(result: SyncResult, leader: bool) -> None:
        if result.applied:
            applied.set()

    loop = SyncLoop(config_for(base, "apply", tmp_path), lock_queue=lock_name, on_result=on_result)
    task = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(applied.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(emu.subs.items) == 1
    assert loop.lock is not None and not loop.lock.held  # released on the way out


async def test_unreachable_broker_means_plan_only(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    emu, base = emulator
    loop = SyncLoop(config_for(base, "apply", tmp_path), amqp_url="amqp://guest:guest@127.0.0.1:9/")
    try:
        (result,) = await loop.run_once()
        assert not result.applied and emu.subs.items == {}
    finally:
        await loop.aclose()


async def test_without_lock_a_single_replica_always_applies(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    emu, base = emulator
    loop = SyncLoop(config_for(base, "apply", tmp_path), lock=False)
    try:
        (result,) = await loop.run_once()
        assert result.applied and len(emu.subs.items) == 1
    finally:
        await loop.aclose()
