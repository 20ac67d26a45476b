"""Returning freed heap memory to the OS (glibc), so RSS comes back down after a burst.

An outage, a flood of large arrays or a long drain leaves the C heap with free but resident
pages: glibc keeps them for reuse and returns only what sits at the top of the main arena.
`malloc_trim(0)` hands every free page of every arena back; it took 0.1 to 0.2 ms on a 60 MB
heap here, and the daemon calls it every 30 s rather than after each request. Elsewhere
(musl, macOS, Windows) both functions do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from typing import Any

log = logging.getLogger("od_bridge.memory")

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


def _glibc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None  # not glibc
    return libc


_LIBC = _glibc()


def limit_arenas(count: int = 2) -> bool:
    """At most `count` malloc arenas: the spool's thread then shares the heap with the loop
    instead of keeping an arena of its own (up to 8 per core) full of freed pages."""
    return _LIBC is not None and bool(_LIBC.mallopt(_M_ARENA_MAX, count))


def trim() -> bool:
    """Give free heap pages back to the OS; True if any were."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))


async def trim_every(interval_s: float) -> None:
    """Trim every `interval_s` seconds until cancelled."""
    if _LIBC is None:
        return
    while True:
        await asyncio.sleep(interval_s)
        started = time.perf_counter()
        released = trim()
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        log.debug("heap trimmed", extra={"released": released, "ms": elapsed_ms})
