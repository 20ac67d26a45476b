"""Stop signals on every platform: SIGTERM, SIGINT (Ctrl-C) and, on Windows, Ctrl-Break."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

# SIGBREAK exists on Windows only: Ctrl-Break, which some service wrappers send to stop.
STOP_SIGNALS = tuple(
    s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGBREAK", None)) if s is not None
)


def on_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """Call `stop` on the loop when a stop signal arrives (from the main thread only)."""
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop)
        except NotImplementedError:
            # Windows (a service under WinSW/NSSM is stopped with Ctrl-C): its event loops have
            # no signal handlers, so a plain handler hands the stop over to the loop instead.
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop))
