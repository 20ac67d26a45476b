"""When the next call to an Open Dental API may go: a pacer per customer key, Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

Sleep = Callable[[float], Awaitable[None]]


class Pacer:
    """Spaces calls made with one customer key at least `interval_s` apart (Remote throttling)."""

    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None

    async def wait(self) -> None:
        """Return when the next call may go out, and book that slot."""
        async with self._lock:
            if self._last is not None and self.interval_s > 0:
                delay = self._last + self.interval_s - self._clock()
                if delay > 0:
                    await self._sleep(delay)
            self._last = self._clock()


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
