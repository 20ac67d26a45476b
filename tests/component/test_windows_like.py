"""od-bridge on a Python like Windows' (no fcntl, no uvloop, no loop signal handlers, no system
zone database), simulated in subprocesses: every command imports, the spool lock works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# An empty PYTHONTZPATH hides the system's zone files from zoneinfo, as on Windows.
ENV = {**os.environ, "PYTHONTZPATH": "", "PYTHONDONTWRITEBYTECODE": "1"}


def windows_like(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter after tests.windows_like took the POSIX parts away."""
    return subprocess.run(
        [sys.executable, "-c", f"import tests.windows_like\n{code}", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_command_imports_and_fcntl_really_is_gone() -> None:
    modules = "bridge.cli bridge.service bridge.spool bridge.spoolcli bridge.tail bridge.signals"
    modules += " bridge.emulator.app bridge.sync.loop bridge.memory"
    result = windows_like(f"import {', '.join(modules.split())}\nprint('imported')\nimport fcntl")
    # Every module imported; only the last line failed, as it would on Windows.
    assert result.stdout == "imported\n", result.stderr[-500:]
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: import of fcntl halted; None in sys.modules"
    ), result.stderr[-500:]


def test_check_config_resolves_zones_without_a_system_zone_database() -> None:
    result = windows_like(
        "import sys; from bridge.cli import main; sys.exit(main())",
        "check-config",
        "-c",
        str(ROOT / "config.example.yaml"),
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_the_spool_lock_tests_pass_without_fcntl() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.windows_like", "-p", "no:cacheprovider",
         "tests/component/test_spool.py", "-k", "lock or one_process_per_spool_file"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    assert "3 passed" in result.stdout, result.stdout[-500:]
