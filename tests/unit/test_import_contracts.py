"""The module rules (import-linter contracts in pyproject.toml) hold, and catch each break."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# One import per contract that the design forbids, appended to a copy of the package.
BREAKS = {
    "normalize.py": ("import sqlite3", "bridge.normalize is not allowed to import sqlite3"),
    "emulator/office.py": (
        "from .. import config",
        "bridge.emulator is not allowed to import bridge.config",
    ),
    "sync/client.py": ("import aiormq", "bridge.sync.client -> aiormq"),
    "receiver.py": (
        "from .sync import loop",
        "bridge.receiver is not allowed to import bridge.sync",
    ),
    "spool.py": ("import aiohttp", "bridge.spool is not allowed to import aiohttp"),
    "status.py": ("from . import service", "bridge.status -> bridge.service"),
    "log.py": ("from . import errors", "bridge.log is not allowed to import bridge.errors"),
    "config.py": ("from . import metrics", "bridge.config is not allowed to import bridge.metrics"),
}


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with this project's contracts, on the package copied into `tree`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},  # the copy, not the installed package
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "bridge", tmp_path / "bridge", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_package(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_an_import_against_any_rule_breaks_its_contract(tmp_path: Path) -> None:
    tree = copy_package(tmp_path)
    for module, (line, _) in BREAKS.items():
        with (tree / "bridge" / module).open("a") as source:
            source.write(f"\n{line}\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "Contracts: 0 kept, 8 broken." in result.stdout, result.stdout[-3000:]
    for _, message in BREAKS.values():
        assert message in result.stdout, message
