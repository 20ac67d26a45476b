"""memory.trim gives freed heap pages back to the OS (on glibc; elsewhere it does nothing)."""

from __future__ import annotations

import asyncio
import os

import pytest

from bridge import memory

# The daemon ships on glibc (Debian, the python:slim image); under CI=true its absence is a
# failure, elsewhere (macOS, musl) these tests do not apply.
glibc = pytest.mark.skipif(
    memory._LIBC is None and os.environ.get("CI") != "true", reason="glibc only"
)


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@glibc
def test_trim_returns_freed_pages_that_sit_below_live_ones() -> None:
    # 40 MB of 2 KiB blocks with one in a hundred kept: the freed ones are holes under live
    # blocks, which glibc keeps resident until trimmed.
    blocks = [bytes(2048) for _ in range(20_000)]
    kept = blocks[::100]
    del blocks
    before = _rss_kb()
    assert memory.trim()
    assert before - _rss_kb() > 20_000
    assert kept


@glibc
def test_arenas_can_be_limited() -> None:
    assert memory.limit_arenas(2)


async def test_trim_every_stops_when_cancelled() -> None:
    task = asyncio.create_task(memory.trim_every(0.001))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
