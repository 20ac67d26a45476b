"""Import first to run od-bridge as on Windows' Python: no fcntl (nor the other POSIX-only
modules), no uvloop, and event loops without signal handlers. `pytest -p tests.windows_like`,
or `import tests.windows_like` at the top of a subprocess's code."""

from __future__ import annotations

import asyncio.unix_events
import sys

POSIX_ONLY = ("fcntl", "grp", "pwd", "resource", "termios")

for _name in (*POSIX_ONLY, "uvloop"):
    sys.modules[_name] = None  # type: ignore[assignment]  # `import fcntl` raises ImportError now


def _no_signal_handlers(*_: object) -> None:
    raise NotImplementedError  # what add_signal_handler does on Windows' event loops


asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = _no_signal_handlers  # type: ignore[assignment,method-assign]
