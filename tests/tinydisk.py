"""A tiny tmpfs of a test's own, for a spool that fills its disk (root only; always unmounted)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import missing


@contextlib.contextmanager
def tiny_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a `size` tmpfs at `where`; skip (fail under CI=true) where mounting is impossible."""
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        reason = getattr(exc, "stderr", b"") or str(exc)
        missing(f"cannot mount a tmpfs for the full-disk tests (needs root): {reason!r}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)
