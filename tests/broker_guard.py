"""Proof that a test run left the local broker at AMQP_URL alone: same VM, app and watermark."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tests.support import broker_address

# Evaluated on the broker: VM uptime (ms), memory watermark, the rabbit app's top supervisor (a new
# one after stop_app/start_app) and the AMQP ports it serves (is it the broker at AMQP_URL?).
PROBE = (
    "{element(1, erlang:statistics(wall_clock)), vm_memory_monitor:get_vm_memory_high_watermark(),"
    " case whereis(rabbit_sup) of undefined -> none; P -> pid_to_list(P) end,"
    " [element(6, L) || L <- rabbit_networking:active_listeners(), element(3, L) =:= amqp]}."
)
TERM = re.compile(r'^\{(\d+),(.+),("[^"]*"|none),\[([\d,]*)\]\}$')


@dataclass(frozen=True)
class BrokerState:
    """What a restart, stop_app or a watermark change would alter."""

    uptime_ms: int
    watermark: str
    supervisor: str


def read() -> BrokerState | str:
    """The local broker's state, or why it cannot be read (not local, no CLI, no access)."""
    host, port = broker_address()
    if host not in ("127.0.0.1", "localhost", "::1"):
        return f"AMQP_URL is not on this machine ({host})"
    cli = shutil.which("rabbitmqctl")
    if cli is None:
        return "no rabbitmqctl on PATH"
    try:
        out = subprocess.run(
            [cli, "-q", "eval", PROBE], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return f"rabbitmqctl could not ask the broker ({type(exc).__name__})"
    match = TERM.match(out.replace(" ", "").replace("\n", ""))
    if match is None:
        return f"unexpected rabbitmqctl answer {out[:80]!r}"
    if str(port) not in match[4].split(","):
        return f"rabbitmqctl's default node does not serve port {port}"
    return BrokerState(int(match[1]), match[2], match[3])


class Guard:
    """Reads the broker's state when the run starts (in the background) and compares at the end."""

    def __init__(self, reader: Callable[[], BrokerState | str] = read) -> None:
        self._read = reader
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._before: Future[BrokerState | str] = self._pool.submit(reader)

    def verdict(self) -> tuple[bool, str]:
        """(ok, one line for the terminal)."""
        before = self._before.result()
        self._pool.shutdown()
        if isinstance(before, str):
            return True, f"broker guard: not checked: {before}"
        after = self._read()
        if isinstance(after, str):
            return False, f"broker guard: the broker at AMQP_URL is gone or unreadable: {after}"
        up, up_after = before.uptime_ms // 1000, after.uptime_ms // 1000
        changes = []
        if after.uptime_ms < before.uptime_ms:
            changes.append(f"its VM restarted (uptime {up} s -> {up_after} s)")
        if after.supervisor != before.supervisor:
            changes.append("its rabbit app restarted (stop_app/start_app)")
        if after.watermark != before.watermark:
            changes.append(f"its watermark changed ({before.watermark} -> {after.watermark})")
        if changes:
            return False, (
                "broker guard: the broker at AMQP_URL was disturbed during this run (by this suite"
                f" or another process on this machine): {'; '.join(changes)}"
            )
        return True, (
            f"broker guard: the broker at AMQP_URL was left alone (uptime {up} s -> {up_after} s,"
            f" same app, watermark {after.watermark})"
        )
