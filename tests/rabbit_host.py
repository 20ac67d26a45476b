"""The host's side of private RabbitMQ nodes: port blocks held across runs, our processes.

Run as a script (`python rabbit_host.py DIR`), it is the watchdog that removes what a run left.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

BLOCK = 32  # ports per block
LOCK_DIR = Path(tempfile.gettempdir()) / "od-bridge-rabbit-ports"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _port_range() -> tuple[int, int]:
    """Ports below Linux's ephemeral range, so no client socket takes one between runs."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 20000, max(low, 20000 + 4 * BLOCK)


class PortBlock:
    """BLOCK consecutive free ports, held by a file lock so other test runs pick another block."""

    def __init__(self) -> None:
        LOCK_DIR.mkdir(mode=0o1777, exist_ok=True)
        low, high = _port_range()
        firsts = list(range(low, high - BLOCK, BLOCK))
        random.shuffle(firsts)
        for first in firsts:
            fd = os.open(LOCK_DIR / f"{first}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:  # os.lockf, not fcntl: conftest also loads under tests.windows_like (no fcntl)
                os.lockf(fd, os.F_TLOCK, 0)
            except OSError:
                os.close(fd)
                continue
            if all(_bindable(p) for p in range(first, first + BLOCK)):
                self.first, self._fd = first, fd
                return
            os.close(fd)
        raise RuntimeError("no free block of ports for a private RabbitMQ")

    def release(self) -> None:
        """Let other runs use these ports again (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def our_pids(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (our HOME or pid file): ours, nobody else's."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def remove(base: Path) -> list[int]:
    """SIGKILL every process whose HOME is `base`, then delete it; the pids that were left."""
    leftovers = our_pids(f"HOME={base}")
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)
    return leftovers


class Watchdog:
    """Removes `base` and its processes once the test run that made it ends, however it ends.

    The watchdog blocks reading a pipe whose only writer is this process: when this process
    exits, even by SIGKILL, the kernel closes that end and the read returns.
    """

    def __init__(self, base: Path) -> None:
        read_end, self._lifeline = os.pipe()  # not inherited by other children (O_CLOEXEC)
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(base)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a killed process group leaves it running
        )
        os.close(read_end)

    def release(self) -> None:
        """The run removed everything itself: let the watchdog go (it finds nothing left)."""
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
            self._process.wait(timeout=30)


if __name__ == "__main__":
    sys.stdin.buffer.read()  # returns at EOF: the run that started us has ended
    remove(Path(sys.argv[1]))
