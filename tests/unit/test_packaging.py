"""What pyproject.toml promises installs: Windows gets tzdata and no uvloop."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}


def project() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table


def installed_on(platform: dict[str, str], extra: str = "") -> set[str]:
    """The names pip installs from the runtime dependencies, or from one extra, on `platform`."""
    lines = project()["optional-dependencies"][extra] if extra else project()["dependencies"]
    names = set()
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or marker.evaluate(platform | {"extra": extra}):
            names.add(requirement.name.lower())
    return names


def test_windows_gets_zone_data_and_no_uvloop() -> None:
    assert "tzdata" in installed_on(WINDOWS)  # Windows has no zone database of its own
    assert installed_on(WINDOWS, "fast") == set()  # uvloop has no Windows build
    assert installed_on(LINUX, "fast") == {"uvloop"}
