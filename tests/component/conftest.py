"""Fixtures the component tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.spool import Spool


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    """An open spool of 1,000 rows in the test's temp dir, closed afterwards."""
    s = Spool(tmp_path / "spool.sqlite3", max_events=1000)
    await s.open()
    yield s
    await s.close()
