"""od-bridge commands in subprocesses, for tests that signal or kill them (the daemon, tail)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def start(
    *args: str, ready: bytes, windows_like: bool = False, timeout: float = 30
) -> asyncio.subprocess.Process:
    """`od-bridge ARGS` in a subprocess; returns once a line of its stderr contains `ready`.

    Its stderr is read on in the background from then on (a full pipe would stall its logging);
    `windows_like` runs it without fcntl, uvloop and loop signal handlers (tests/windows_like.py).
    """
    code = "import tests.windows_like\n" if windows_like else ""
    code += "import sys\nfrom bridge.cli import main\nsys.exit(main())"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stderr is not None
    stderr = process.stderr

    async def until_ready() -> None:
        seen: list[bytes] = []
        while ready not in (line := await stderr.readline()):
            if not line:
                raise AssertionError(f"od-bridge {args[0]} exited: {b''.join(seen[-5:]).decode()}")
            seen.append(line)

    try:
        await asyncio.wait_for(until_ready(), timeout)
    except BaseException:
        process.kill()
        await process.wait()
        raise

    async def discard() -> None:
        while await stderr.read(65536):
            pass

    process._discard = asyncio.create_task(discard())  # type: ignore[attr-defined]  # kept until exit
    return process


async def serve(config: Path, *, windows_like: bool = False) -> asyncio.subprocess.Process:
    """The daemon on `config`; returns once it listens."""
    args = ("serve", "-c", str(config), "--log-level", "INFO")
    return await start(*args, ready=b'"listening"', windows_like=windows_like)


async def stop(process: asyncio.subprocess.Process, signum: int = signal.SIGTERM) -> int:
    """Send `signum` and wait for the exit; its exit code."""
    process.send_signal(signum)
    return await asyncio.wait_for(process.wait(), 60)
