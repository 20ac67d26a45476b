"""Office liveness: matching the listing to the wanted subscriptions, lags, colours, gauges."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge.config_loader import parse
from bridge.health import AMBER, GREEN, RED, Health, silent_after_s
from bridge.metrics import Metrics

CHICAGO = ZoneInfo("America/Chicago")
URL = "http://127.0.0.1:8080/apievents"
CONFIG = parse(
    """
public_url: http://127.0.0.1:8080
customers:
  - name: main-office
    customer_key: k1
    timezone: America/Chicago
    api: {url: "http://127.0.0.1:30223/api/v1", developer_key: d}
    subscriptions:
      - {watch_table: Appointment, polling_seconds: 30, workstation: OD-SERVER}
      - {watch_table: Patient, polling_seconds: 60, workstation: OD-SERVER}
      - {ui_event_type: PatientSelected}
  - name: quiet-office
    customer_key: k2
""",
    env={},
)
T0 = datetime(2026, 11, 28, 9, 0, 0)  # office wall clock (Chicago)
T0_UNIX = T0.replace(tzinfo=CHICAGO).timestamp()


def sub(num: int, table: str = "", event: str = "", start: datetime = T0, **extra: Any) -> Any:
    return {
        "SubscriptionNum": num, "EndPointUrl": f"{URL}/{table or event}",
        "Workstation": "OD-SERVER" if table else "", "CustomerKey": "k1", "WatchTable": table,
        "PollingSeconds": 30 if table == "Appointment" else 60 if table else 0,
        "UiEventType": event, "DateTimeStart": start.strftime("%Y-%m-%d %H:%M:%S"),
        "DateTimeStop": "0001-01-01 00:00:00", "Note": "managed by od-bridge", **extra,
    }  # fmt: skip


def listing() -> list[Any]:
    return [sub(1, "Appointment"), sub(2, "Patient"), sub(3, event="PatientSelected")]


def samples(health: Health) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(health)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_lag_is_office_now_minus_date_time_start_and_grows_while_listing_fails() -> None:
    clock = [T0_UNIX + 45]
    health = Health(CONFIG, clock=lambda: clock[0])
    health.observed("main-office", listing(), None)
    got = samples(health)
    appt = labels(customer="main-office", kind="db", name="Appointment")
    assert got[("od_bridge_subscription_lag_seconds", appt)] == 45
    assert got[("od_bridge_subscription_polling_seconds", appt)] == 30
    assert got[("od_bridge_subscription_present", appt)] == 1
    assert got[("od_bridge_sync_listing_ok", labels(customer="main-office"))] == 1
    # UI subscriptions are not polled: present, but no lag.
    ui = labels(customer="main-office", kind="ui", name="PatientSelected")
    assert got[("od_bridge_subscription_present", ui)] == 1
    assert ("od_bridge_subscription_lag_seconds", ui) not in got

    clock[0] += 600
    health.observed("main-office", None, "Open Dental unreachable")
    got = samples(health)
    assert got[("od_bridge_sync_listing_ok", labels(customer="main-office"))] == 0
    assert got[("od_bridge_subscription_lag_seconds", appt)] == 645  # still counting


def test_colours_follow_the_alert_thresholds() -> None:
    clock = [T0_UNIX]
    health = Health(CONFIG, clock=lambda: clock[0])
    health.observed("main-office", listing(), None)
    appt = health.subscriptions["main-office"][("db", "Appointment")]
    assert silent_after_s(30) == 390
    clock[0] = T0_UNIX + 391
    assert health.colour(appt) == GREEN  # measured at the pass, not growing in between
    health.observed("main-office", listing(), None)
    appt = health.subscriptions["main-office"][("db", "Appointment")]
    assert health.colour(appt) == RED
    clock[0] = T0_UNIX + 390
    health.observed("main-office", listing(), None)
    assert health.colour(health.subscriptions["main-office"][("db", "Appointment")]) == GREEN


def test_absent_expired_and_failing_subscriptions() -> None:
    clock = [T0_UNIX + 5]
    health = Health(CONFIG, clock=lambda: clock[0])
    failing = sub(
        2, "Patient", FailureReason="The remote server returned an error: (503).",
        SubsequentFailures=4, DateTimeLastFailure="2026-11-28 08:59:00",
        DateTimeNextRetry="2026-11-28 09:01:00",
    )  # fmt: skip
    expired = sub(3, event="PatientSelected", DateTimeStop="2026-11-01 00:00:00")
    health.observed("main-office", [failing, expired], None)
    got = samples(health)
    patient = labels(customer="main-office", kind="db", name="Patient")
    assert got[("od_bridge_subscription_failing", patient)] == 1
    assert got[("od_bridge_subscription_failures", patient)] == 4
    assert got[("od_bridge_subscription_last_failure_timestamp_seconds", patient)] == (
        datetime(2026, 11, 28, 8, 59).replace(tzinfo=CHICAGO).timestamp()
    )
    for kind, name in (("db", "Appointment"), ("ui", "PatientSelected")):
        present = labels(customer="main-office", kind=kind, name=name)
        assert got[("od_bridge_subscription_present", present)] == 0, name
    subs = health.subscriptions["main-office"]
    assert health.colour(subs[("db", "Patient")]) == AMBER
    assert health.colour(subs[("db", "Appointment")]) == RED


def test_an_unmanaged_twin_to_our_url_counts_as_present_and_a_foreign_one_does_not() -> None:
    health = Health(CONFIG, clock=lambda: T0_UNIX)
    twin = sub(7, "Appointment") | {"Note": "made by hand"}
    foreign = sub(8, "Patient") | {"Note": "", "EndPointUrl": "https://other.example/hook"}
    health.observed("main-office", [twin, foreign], None)
    subs = health.subscriptions["main-office"]
    assert subs[("db", "Appointment")].present
    assert not subs[("db", "Patient")].present


def test_process_and_gc_collectors_are_on_the_bridge_registry() -> None:
    text = Metrics().render().decode()
    assert "process_resident_memory_bytes" in text
    assert "python_gc_collections_total" in text
