"""PURE plan(desired, actual): creates, updates of changed fields only, deletes, ownership."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.config_customer import MANAGED_NOTE
from bridge.config_loader import parse
from bridge.sync.plan import desired, plan

PUBLIC = "https://bridge.example"
YAML = f"""
public_url: {PUBLIC}
customers:
  - name: main-office
    customer_key: VzkmZEaUWOjnQX2z
    api: {{url: http://127.0.0.1:30223/api/v1, developer_key: NFF6i0KrXrxDkZHt}}
    subscriptions:
      - {{watch_table: Appointment, polling_seconds: 30, workstation: OD-SERVER}}
      - {{ui_event_type: PatientSelected}}
"""


def want(extra: str = "") -> list[dict[str, Any]]:
    config = parse(YAML + extra, env={})
    return desired(config.customers[0], config)


def actual_from(wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Open Dental would answer after creating `wanted` (documented key order)."""
    out = []
    for num, w in enumerate(wanted, start=10):
        out.append(
            {
                "SubscriptionNum": num,
                "EndPointUrl": w["EndPointUrl"],
                "Workstation": w["Workstation"],
                "CustomerKey": "VzkmZEaUWOjnQX2z",
                "WatchTable": w["WatchTable"],
                "PollingSeconds": w["PollingSeconds"],
                "UiEventType": w["UiEventType"],
                "DateTimeStart": "2026-11-28 09:00:00",
                "DateTimeStop": "0001-01-01 00:00:00",
                "Note": w["Note"],
            }
        )
    return out


def make_plan(wanted: list[dict[str, Any]], actual: list[dict[str, Any]], **kw: Any) -> Any:
    return plan("main-office", wanted, actual, public_url=PUBLIC, **kw)


def test_empty_office_creates_every_subscription_with_defaults() -> None:
    p = make_plan(want(), [])
    assert [a.op for a in p.actions] == ["create", "create"]
    db, ui = (dict(a.body) for a in p.actions)
    assert db == {
        "EndPointUrl": f"{PUBLIC}/apievents/Appointment",
        "Workstation": "OD-SERVER",
        "WatchTable": "Appointment",
        "PollingSeconds": 30,
        "Note": MANAGED_NOTE,
    }
    assert ui == {
        "EndPointUrl": f"{PUBLIC}/apievents/PatientSelected",
        "Workstation": "",
        "UiEventType": "PatientSelected",
        "Note": MANAGED_NOTE,
    }
    assert "PollingSeconds" not in ui  # only database subscriptions poll


def test_identical_gives_empty_plan() -> None:
    wanted = want()
    p = make_plan(wanted, actual_from(wanted))
    assert p.pending == ()
    assert [a.op for a in p.actions] == ["unchanged", "unchanged"]


def test_datetimestart_differences_and_unknown_fields_are_not_drift() -> None:
    wanted = want()
    actual = actual_from(wanted)
    for sub in actual:
        sub["DateTimeStart"] = "2026-11-28 09:41:07"  # Open Dental rewrites it every poll
        sub |= {"FailureReason": "timeout", "SubsequentFailures": 3, "DateTimeNextRetry": "x"}
    assert make_plan(wanted, actual).pending == ()


def test_changed_polling_note_and_stop_update_only_those_fields() -> None:
    actual = actual_from(want())
    wanted = want()
    wanted[0] |= {
        "PollingSeconds": 60,
        "Note": f"{MANAGED_NOTE}: ops",
        "DateTimeStop": "2027-01-01",
    }
    p = make_plan(wanted, actual)
    (update,) = p.pending
    assert update.op == "update" and update.num == 10
    assert dict(update.body) == {
        "PollingSeconds": 60,
        "DateTimeStop": "2027-01-01",
        "Note": f"{MANAGED_NOTE}: ops",
    }
    assert {(c.field, c.old) for c in update.changes} == {
        ("PollingSeconds", 30),
        ("DateTimeStop", "0001-01-01 00:00:00"),
        ("Note", MANAGED_NOTE),
    }


def test_each_single_field_change_is_one_update_with_that_field() -> None:
    for field, value in (("PollingSeconds", 45), ("Note", "managed by od-bridge (x)")):
        wanted = want()
        actual = actual_from(wanted)
        wanted[0] = wanted[0] | {field: value}
        (update,) = make_plan(wanted, actual).pending
        assert dict(update.body) == {field: value}


def test_date_only_stop_equals_midnight_stop() -> None:
    wanted = want()
    wanted[0]["DateTimeStop"] = "2027-01-01"
    actual = actual_from(wanted)
    actual[0]["DateTimeStop"] = "2027-01-01 00:00:00"
    assert make_plan(wanted, actual).pending == ()


def test_changed_watch_table_is_delete_plus_create() -> None:
    actual = actual_from(want())
    changed = want()  # the first subscription now watches Patient instead of Appointment
    changed[0] |= {"WatchTable": "Patient", "EndPointUrl": f"{PUBLIC}/apievents/Patient"}
    p = make_plan(changed, actual)
    ops = [(a.op, a.name) for a in p.pending]
    assert ops == [("create", "Patient"), ("delete", "Appointment")]
    assert p.pending[1].num == 10


def test_unmanaged_subscriptions_are_ignored_never_touched() -> None:
    theirs = actual_from(want())
    for sub in theirs:
        sub |= {"EndPointUrl": "https://other.example/hook", "Note": "their integration"}
    p = make_plan(want(), theirs)
    assert [a.op for a in p.actions] == ["create", "create", "ignored", "ignored"]
    assert all(a.op != "delete" and a.op != "update" for a in p.actions if a.num)


def test_managed_by_url_prefix_even_without_marker() -> None:
    actual = actual_from(want())
    actual[0]["Note"] = ""
    (update,) = make_plan(want(), actual).pending
    assert dict(update.body) == {"Note": MANAGED_NOTE}


def test_removed_managed_subscription_is_deleted_unless_prune_none() -> None:
    actual = actual_from(want())
    only_db = want()[:1]
    assert [(a.op, a.num) for a in make_plan(only_db, actual).pending] == [("delete", 11)]
    kept = make_plan(only_db, actual, prune="none")
    assert kept.pending == ()
    assert "prune: none" in kept.actions[-1].reason


def test_retired_subscription_is_not_deleted_again() -> None:
    actual = actual_from(want())
    actual[1]["DateTimeStop"] = "2026-11-28 10:00:00"
    p = make_plan(want()[:1], actual, now=datetime(2026, 11, 28, 11, 0, 0))
    assert p.pending == ()
    assert "retired" in p.actions[-1].reason


def test_duplicates_of_ours_are_deleted_keeping_the_closest() -> None:
    wanted = want()
    actual = actual_from(wanted)
    copy = dict(actual[0]) | {"SubscriptionNum": 30, "PollingSeconds": 99}
    p = make_plan(wanted, [*actual, copy])
    assert [(a.op, a.num) for a in p.pending] == [("delete", 30)]


def test_unmanaged_twin_prevents_a_duplicate_create() -> None:
    wanted = want()
    actual = actual_from(wanted)
    actual[0]["Note"] = "hand made"
    actual[0]["EndPointUrl"] = wanted[0]["EndPointUrl"] = "https://other.example/appointment"
    p = make_plan(wanted, actual)
    assert p.pending == ()
    (ignored,) = p.of("ignored")
    assert ignored.num == 10 and "already covers" in ignored.reason


def test_matching_ignores_case_and_all_workstations_spelling() -> None:
    wanted = want()
    actual = actual_from(wanted)
    actual[0]["Workstation"] = "od-server"
    actual[1]["Workstation"] = "All Workstations"  # 26.2.1+ spelling of blank
    assert make_plan(wanted, actual).pending == ()


def test_changed_workstation_or_url_of_ours() -> None:
    wanted = want()
    actual = actual_from(wanted)
    actual[1]["EndPointUrl"] = f"{PUBLIC}/old/PatientSelected"
    (update,) = make_plan(wanted, actual).pending
    assert dict(update.body) == {"EndPointUrl": f"{PUBLIC}/apievents/PatientSelected"}
    assert update.changes[0].old == f"{PUBLIC}/old/PatientSelected"


def test_summary_counts_every_op() -> None:
    p = make_plan(want(), [])
    assert p.summary() == "2 to create, 0 to update, 0 to delete, 0 unchanged, 0 ignored"


def test_new_workstation_moves_ours_with_one_update() -> None:
    actual = actual_from(want())
    wanted = want()
    wanted[0]["Workstation"] = "FRONTDESK1"
    (update,) = make_plan(wanted, actual).pending
    assert (update.op, update.num, dict(update.body)) == (
        "update",
        10,
        {"Workstation": "FRONTDESK1"},
    )


def test_bare_yaml_off_means_sync_off() -> None:
    assert parse(YAML + "sync: {mode: off}\n", env={}).sync.mode == "off"
