"""A start that cannot succeed (TLS files, busy port, locked spool) is one sentence and exit 1."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config_loader import load
from bridge.errors import SpoolError
from bridge.listener import cannot_listen
from bridge.service import Service
from bridge.spool import lock_file

# Nothing listens on port 1: had any step reached the broker, its warning would be on stderr.
CONFIG = """
listen: {{host: 127.0.0.1, port: {port}{tls}}}
amqp: {{url: "amqp://guest:guest@127.0.0.1:1/"}}
spool: {{path: {spool}}}
sync: {{mode: off}}
customers:
  - {{name: main-office, customer_key: abcdefghijklmnop}}
"""


def write_config(tmp_path: Path, port: int = 0, tls: str = "") -> Path:
    path = tmp_path / "od-bridge.yaml"
    path.write_text(CONFIG.format(port=port, tls=tls, spool=tmp_path / "spool.sqlite3"))
    return path


def od_bridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another process-like owner is listening on."""
    with socket.socket() as owner:
        owner.bind(("127.0.0.1", 0))
        owner.listen()
        yield owner.getsockname()[1]


@pytest.fixture
def locked_spool(tmp_path: Path) -> Iterator[None]:
    """The spool's lock held as a running od-bridge holds it."""
    lock = lock_file(tmp_path / "spool.sqlite3.lock")
    yield
    lock.close()


def test_missing_tls_file(tmp_path: Path) -> None:
    tls = f", tls: {{cert: {tmp_path}/no.crt, key: {tmp_path}/no.key}}"
    run = od_bridge("serve", "-c", str(write_config(tmp_path, tls=tls)))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [
        "error: listen.tls: cannot load certificate or key "
        f"(No such file or directory: {tmp_path}/no.crt, {tmp_path}/no.key)"
    ]
    assert not (tmp_path / "spool.sqlite3").exists()  # failed before the spool was touched


def test_busy_port(tmp_path: Path, busy_port: int) -> None:
    run = od_bridge("serve", "-c", str(write_config(tmp_path, port=busy_port)))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]
    assert not (tmp_path / "spool.sqlite3").exists()


def test_locked_spool(tmp_path: Path, locked_spool: None) -> None:
    run = od_bridge("serve", "-c", str(write_config(tmp_path)))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [
        f"error: spool {tmp_path}/spool.sqlite3 is in use by another od-bridge process"
    ]


def test_emulate_on_a_busy_port(busy_port: int) -> None:
    run = od_bridge("emulate", "--port", str(busy_port))
    # No "emulating …" line for an emulator that never ran.
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]


async def test_a_failed_start_unwinds_what_it_built(tmp_path: Path, locked_spool: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = Service(load(write_config(tmp_path, port=port), env={}))
    with pytest.raises(SpoolError, match="in use by another od-bridge process"):
        await service.start()
    # The port it had bound is free again, and no task of its is left running.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await service.stop()  # nothing to unwind: a no-op


def test_busy_admin_port(tmp_path: Path, busy_port: int) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text() + f"admin: {{listen: '127.0.0.1:{busy_port}'}}\n")
    run = od_bridge("serve", "-c", str(config))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [
        f"error: admin.listen: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]


def test_a_host_that_does_not_resolve_reads_plainly() -> None:
    # Without a DNS lookup (slow or absent on a CI host): the sentence for getaddrinfo's error,
    # whose errno is no OS error number ("Unknown error -2" before).
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert cannot_listen("no-such-host", 80, error) == (
        "cannot listen on no-such-host:80: Name or service not known"
    )
