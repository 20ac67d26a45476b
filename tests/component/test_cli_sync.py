"""`od-bridge sync` against the emulator over HTTP: plan, apply, idempotence, edits, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config_customer import MANAGED_NOTE
from bridge.config_loader import parse
from bridge.emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY, Emulator, Settings
from bridge.sync.apply import apply
from bridge.sync.client import OpenDentalClient
from bridge.sync.plan import desired, plan

PUBLIC = "http://127.0.0.1:8080"
APPOINTMENT = "{watch_table: Appointment, polling_seconds: 30, workstation: OD-SERVER}"
SELECTED = "{ui_event_type: PatientSelected}"


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Office:
    emulator: Emulator
    base: str
    path: Path
    capsys: pytest.CaptureFixture[str]

    def write(self, *subs: str, min_interval: float = 0, extra: str = "") -> None:
        lines = "\n".join(f"      - {s}" for s in subs)
        self.path.write_text(
            f"""
public_url: {PUBLIC}
customers:
  - name: main-office
    customer_key: {DOC_CUSTOMER_KEY}
    api: {{url: "{self.base}", developer_key: {DOC_DEVELOPER_KEY}, min_interval_s: {min_interval}}}
    subscriptions:{" []" if not subs else ""}
{lines}
{extra}"""
        )

    async def sync(self, *args: str) -> Run:
        self.capsys.readouterr()
        # main() runs its own event loop, so give it a thread while ours serves the emulator.
        code = await asyncio.to_thread(main, ["sync", "-c", str(self.path), *args])
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def subs(self) -> list[dict[str, Any]]:
        return self.emulator.subs.of(DOC_CUSTOMER_KEY)


async def office(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Office]:
    emulator = Emulator(settings)
    async with emulator.serve() as base:
        yield Office(emulator, base, tmp_path / "od-bridge.yaml", capsys)


@pytest.fixture
async def od(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Office]:
    async for o in office(Settings(), tmp_path, capsys):
        yield o


async def test_plan_prints_and_changes_nothing(od: Office) -> None:
    od.write(APPOINTMENT, SELECTED)
    run = await od.sync()
    assert run.code == 0, run.err
    assert od.subs() == []
    lines = run.out.splitlines()
    assert lines[0].split() == [
        "CUSTOMER",
        "ACTION",
        "SUBSCRIPTION",
        "WORKSTATION",
        "NUM",
        "DETAILS",
    ]
    assert (
        "create" in lines[1]
        and "WatchTable Appointment" in lines[1]
        and "PollingSeconds=30" in lines[1]
    )
    assert "UiEventType PatientSelected" in lines[2] and "(all)" in lines[2]
    assert lines[-1] == "main-office: 2 to create, 0 to update, 0 to delete, 0 unchanged, 0 ignored"
    assert (await od.sync("--exit-code")).code == 2


async def test_apply_creates_then_second_run_is_empty(od: Office) -> None:
    od.write(APPOINTMENT, SELECTED)
    run = await od.sync("--apply")
    assert run.code == 0, run.err
    assert "main-office: created WatchTable Appointment (OD-SERVER) #1" in run.out
    assert [(s["WatchTable"] or s["UiEventType"], s["Note"]) for s in od.subs()] == [
        ("Appointment", MANAGED_NOTE),
        ("PatientSelected", MANAGED_NOTE),
    ]
    assert od.subs()[0]["EndPointUrl"] == f"{PUBLIC}/apievents/Appointment"
    again = await od.sync("--apply", "--exit-code")
    assert again.code == 0, again.out
    assert "0 to create, 0 to update, 0 to delete, 2 unchanged" in again.out
    assert len(od.subs()) == 2


async def test_yaml_edit_becomes_one_update(od: Office) -> None:
    od.write(APPOINTMENT, SELECTED)
    await od.sync("--apply")
    od.write(APPOINTMENT.replace("30", "60"), SELECTED)
    run = await od.sync("--exit-code")
    assert run.code == 2
    assert "PollingSeconds: 30 → 60" in run.out
    run = await od.sync("--apply")
    assert "updated WatchTable Appointment (OD-SERVER) #1: PollingSeconds: 30 → 60" in run.out
    assert od.subs()[0]["PollingSeconds"] == 60


async def test_removal_deletes_ours_only(od: Office) -> None:
    od.write(APPOINTMENT, SELECTED)
    await od.sync("--apply")
    od.emulator.subs.create(
        DOC_CUSTOMER_KEY,
        {
            "EndPointUrl": "https://crm.example/hook",
            "UiEventType": "PatientSelected",
            "Note": "CRM",
        },
    )
    od.write(APPOINTMENT)
    run = await od.sync("--apply")
    assert run.code == 0, run.err
    assert "deleted UiEventType PatientSelected #2" in run.out
    assert "ignored" in run.out and "not managed by od-bridge" in run.out
    assert [s["Note"] for s in od.subs()] == [MANAGED_NOTE, "CRM"]


async def test_prune_none_keeps_removed_ones(od: Office) -> None:
    od.write(APPOINTMENT, SELECTED)
    await od.sync("--apply")
    od.write(APPOINTMENT, extra="sync: {prune: none}")
    run = await od.sync("--apply", "--exit-code")
    assert run.code == 0 and len(od.subs()) == 2


async def test_throttled_emulator_apply_completes_by_pacing_and_retrying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async for od in office(Settings(throttle_s=0.2), tmp_path, capsys):
        od.write(
            APPOINTMENT, SELECTED, "{watch_table: Patient, polling_seconds: 60}", min_interval=0.2
        )
        run = await od.sync("--apply")
        assert run.code == 0, run.err
        assert len(od.subs()) == 3
        assert (await od.sync("--exit-code")).code == 0


async def test_a_400_surfaces_its_message_and_exits_1(od: Office) -> None:
    od.write(
        APPOINTMENT,
        "{watch_table: FutureTable, polling_seconds: 30}",
        extra="    allow_unknown: [FutureTable]",  # else a config error before any call
    )
    run = await od.sync("--apply")
    assert run.code == 1
    assert "WatchTable 'FutureTable' is not supported." in run.err
    assert "Open Dental answered 400" in run.err
    assert len(od.subs()) == 1  # the good one was still created


async def test_bad_keys_exit_1_with_one_sentence(od: Office) -> None:
    od.write(APPOINTMENT)
    od.path.write_text(od.path.read_text().replace(DOC_DEVELOPER_KEY, "WrongDeveloperKey"))
    run = await od.sync()
    assert run.code == 1
    assert "Open Dental answered 401: Invalid Authorization header." in run.err
    assert "WrongDeveloperKey" not in run.err + run.out
    assert "Traceback" not in run.err


async def test_customer_option_limits_the_run(od: Office) -> None:
    od.write(APPOINTMENT, extra="  - {name: other, customer_key: NotInEmulator1}\n")
    run = await od.sync("--customer", "main-office")
    assert run.code == 0 and "main-office" in run.out and "other" not in run.out
    # Naming what the configuration does not hold is a usage error (2), not Open Dental's.
    missing = await od.sync("--customer", "nobody")
    assert (missing.code, missing.out) == (2, "")
    assert missing.err.splitlines() == ["config error: --customer: no customer named nobody"]
    no_api = await od.sync("--customer", "other")
    assert (no_api.code, no_api.out) == (2, "")
    assert no_api.err.splitlines() == [
        "config error: --customer: other has no api: section to sync with"
    ]


async def test_free_tier_delete_falls_back_to_retiring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async for od in office(Settings(allow_delete=False), tmp_path, capsys):
        od.write(APPOINTMENT, SELECTED)
        await od.sync("--apply")
        od.write(APPOINTMENT)
        run = await od.sync("--apply")
        assert run.code == 0, run.err
        assert "DELETE not permitted (401); retired with DateTimeStop" in run.out
        assert od.subs()[1]["DateTimeStop"] != "0001-01-01 00:00:00"
        again = await od.sync("--exit-code")
        assert again.code == 0 and "retired" in again.out


async def test_interrupted_apply_is_finished_without_duplicates(od: Office) -> None:
    od.write(APPOINTMENT, SELECTED)
    config = parse(od.path.read_text(), env={})
    customer = config.customers[0]
    stale = plan(customer.name, desired(customer, config), [], public_url=PUBLIC)
    # The first POST reached Open Dental but its answer was lost (or we crashed right after).
    od.emulator.subs.create(DOC_CUSTOMER_KEY, dict(stale.pending[0].body))
    async with OpenDentalClient.for_customer(customer) as client:
        outcomes = await apply(stale, client)
    assert [(o.ok, o.detail) for o in outcomes] == [(True, "already there"), (True, "")]
    assert len(od.subs()) == 2
    run = await od.sync("--apply", "--exit-code")
    assert run.code == 0 and "2 unchanged" in run.out and len(od.subs()) == 2
