"""What installs: `make run` the runtime only, `make test` the tools too, every version pinned
by constraints.txt, a wheel with its licence and type marker; Windows gets tzdata, no uvloop."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
# Under `make test` the outer make's flags would reach the inner one (and its directory lines).
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def project() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table


def requirements(extra: str = "") -> list[Requirement]:
    """The runtime dependencies, or one extra's."""
    lines = project()["optional-dependencies"][extra] if extra else project()["dependencies"]
    return [Requirement(line) for line in lines]


def installed_on(platform: dict[str, str], extra: str = "") -> set[str]:
    """The names pip installs from the runtime dependencies, or from one extra, on `platform`."""
    return {
        r.name.lower()
        for r in requirements(extra)
        if r.marker is None or r.marker.evaluate(platform | {"extra": extra})
    }


def make_dry_run(target: str) -> list[str]:
    """The commands `make TARGET` runs on a fresh clone (-B: as if nothing were built yet)."""
    result = subprocess.run(
        ["make", "-n", "-B", target],
        cwd=ROOT, env=MAKE_ENV, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.splitlines()


def test_windows_gets_zone_data_and_no_uvloop() -> None:
    assert "tzdata" in installed_on(WINDOWS)  # Windows has no zone database of its own
    assert installed_on(WINDOWS, "fast") == set()  # uvloop has no Windows build
    assert installed_on(LINUX, "fast") == {"uvloop"}


def test_make_run_installs_the_runtime_only_and_make_test_adds_the_tools() -> None:
    run = [line for line in make_dry_run("run") if "pip install" in line and "-e" in line]
    assert run == [".venv/bin/python -m pip install -q -c constraints.txt -e '.[fast]'"]
    test = [line for line in make_dry_run("test") if "pip install" in line and "-e" in line]
    dev = ".venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,fast,deploy]'"
    assert test == [*run, dev]
    assert make_dry_run("run")[-1] == ".venv/bin/od-bridge serve -c config.example.yaml"


def test_make_emulate_runs_in_the_example_offices_zone() -> None:
    (emulate,) = [line for line in make_dry_run("emulate") if " emulate" in line]
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert emulate.endswith(f"emulate --timezone {example['customers'][0]['timezone']}")


def test_constraints_pin_every_dependency_within_its_range() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    extras = ["", *project()["optional-dependencies"]]
    for requirement in (r for extra in extras for r in requirements(extra)):
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pinned), f"{requirement} excludes {pinned}"


def test_the_wheel_carries_the_licence_the_type_marker_and_only_the_package(
    tmp_path: Path,
) -> None:
    # `make dist` itself (the build backend comes from the package index, as for any install).
    make = subprocess.run(
        ["make", "-s", "dist", f"DIST={tmp_path}"],
        cwd=ROOT, env=MAKE_ENV, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert make.returncode == 0, make.stderr[-2000:]
    (wheel,) = tmp_path.glob("od_bridge-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert "bridge/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {n.split("/")[0] for n in names if not n.endswith(".dist-info") and "/" in n} == {
        "bridge",
        wheel.name.split("-py3")[0] + ".dist-info",
    }
    text = metadata.decode()
    assert "License-Expression: MIT" in text
    assert "Classifier: Typing :: Typed" in text
    assert re.search(r"^Requires-Dist: uvloop>=[\d.]+; .*sys_platform != \"win32\"", text, re.M)


@pytest.mark.parametrize("doc", ["README.md", "deploy/systemd/INSTALL.md", "deploy/windows.md"])
def test_install_docs_never_install_an_unpublished_name_from_an_index(doc: str) -> None:
    # od-bridge is on no package index: `pip install od-bridge` would fetch someone else's.
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert not re.search(r"pip install [^\n]*?(?<![/\\\w.-])['\"]?od-bridge\b(?![/\\])", text)
