"""The status document (/status.json): each office's health in red/amber/green, and as a table."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .config import Config
from .config_customer import Customer
from .errors import SpoolError
from .health import (
    AMBER,
    GREEN,
    HORIZON_RISK_S,
    RED,
    SILENT_FACTOR,
    SILENT_SLACK_S,
    SPOOL_OLDEST_WARN_S,
    Health,
    SubscriptionSeen,
    silent_after_s,
    worst,
)
from .spool import Spool


def duration(seconds: float | None) -> str:
    """`45 s`, `7 min`, `3.2 h`, `2.1 d` (`-` for none)."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


async def oldest_age(spool: Spool) -> float | None:
    """Seconds since the oldest spooled row was accepted; None when empty or unreadable."""
    if not spool.size:
        return None
    try:
        oldest = await spool.oldest_timestamp()
    except SpoolError:  # a damaged spool has its own gauge and log line; never fail a page
        return None
    return max(0.0, time.time() - oldest) if oldest else None  # rows carry real time


def _subscription(health: Health, sub: SubscriptionSeen) -> dict[str, Any]:
    lag = health.lag(sub)
    colour = health.colour(sub)
    notes = []
    if not sub.present:
        notes.append("missing on the office side")
    elif lag is not None and lag > HORIZON_RISK_S:
        notes.append(f"silent {duration(lag)}: resend horizon at risk (rows lost at 72 h)")
    elif lag is not None and lag > silent_after_s(sub.polling_s):
        notes.append(f"silent {duration(lag)} (> {duration(silent_after_s(sub.polling_s))})")
    if sub.failing or (sub.failures or 0) > 0:
        count = f" ({sub.failures} in a row)" if sub.failures else ""
        notes.append(f"failing{count}: {sub.reason}" if sub.reason else f"failing{count}")
    note = "; ".join(notes)
    return {
        "kind": sub.kind,
        "name": sub.name,
        "status": colour,
        "present": sub.present,
        "lag_s": lag,
        "polling_s": sub.polling_s or None,
        "silent_after_s": silent_after_s(sub.polling_s) if lag is not None else None,
        "failing": sub.failing,
        "failure_reason": sub.reason or None,
        "failures": sub.failures,
        "last_failure": sub.last_failure,
        "note": note,
    }


def _office(
    config: Config, customer: Customer, health: Health, shared: list[tuple[str, str]]
) -> dict[str, Any]:
    now = health.clock()
    subs = [_subscription(health, s) for s in health.subscriptions.get(customer.name, {}).values()]
    listing = health.listings.get(customer.name)
    watched = customer.api is not None and config.sync.mode != "off"
    reasons = [f"{s['name']}: {s['note']}" for s in subs if s["status"] != GREEN]
    colours = [s["status"] for s in subs]
    if listing is not None and not listing.ok:
        colours.append(AMBER)
        reasons.append(f"cannot list subscriptions: {listing.error}")
    colours += [c for c, _ in shared]
    reasons += [r for c, r in shared if c != GREEN]
    events = health.events.get(customer.name, {})
    return {
        "customer": customer.name,
        "status": worst(*colours),
        "reasons": reasons,
        "watched": watched,  # False: no api section or sync.mode off, liveness unknown
        "listing": None
        if listing is None
        else {"ok": listing.ok, "age_s": now - listing.at, "error": listing.error or None},
        "subscriptions": subs,
        "events": {t: {"at": at, "age_s": now - at} for t, at in sorted(events.items())},
    }


async def snapshot(
    config: Config, health: Health, state: Mapping[str, Any], spool: Spool | None
) -> dict[str, Any]:
    """Everything /status shows: thresholds, broker, spool, and one entry per office."""
    broker = str(state.get("broker", "disconnected"))
    depth = spool.size if spool is not None else None
    age = await oldest_age(spool) if spool is not None else None
    spool_colour = GREEN
    if not state.get("ready", False):
        spool_colour = RED
    elif age is not None and age > SPOOL_OLDEST_WARN_S:
        spool_colour = AMBER
    broker_colour = GREEN if broker == "connected" else RED
    shared = [
        (broker_colour, "broker disconnected"),
        (
            spool_colour,
            f"cannot accept rows: {state.get('reason') or 'broker down, spool off or full'}"
            if spool_colour == RED
            else f"oldest spooled row {duration(age)} old",
        ),
    ]
    offices = [_office(config, c, health, shared) for c in config.customers]
    return {
        "generated_at": health.clock(),
        "status": worst(*(o["status"] for o in offices)),
        "sync_mode": config.sync.mode,
        "broker": {"state": broker, "status": broker_colour},
        "spool": {
            "enabled": spool is not None,
            "depth": depth,
            "oldest_age_s": age,
            "status": spool_colour,
        },
        "thresholds": {
            "silent_after": f"{SILENT_FACTOR} x PollingSeconds + {SILENT_SLACK_S} s",
            "horizon_risk_s": HORIZON_RISK_S,
            "spool_oldest_warn_s": SPOOL_OLDEST_WARN_S,
        },
        "offices": offices,
    }


_WORD = {GREEN: "OK", AMBER: "WARN", RED: "CRIT"}
_ANSI = {GREEN: "\033[32m", AMBER: "\033[33m", RED: "\033[31m"}


def _subs_cell(office: Mapping[str, Any]) -> str:
    if not office["watched"]:
        return "(not watched)"
    parts = []
    for s in office["subscriptions"]:
        if not s["present"]:
            parts.append(f"{s['name']} MISSING")
            continue
        fails = f" fail {s['failures']}" if s["failures"] else ""
        lag = f" lag {duration(s['lag_s'])}" if s["lag_s"] is not None else ""
        parts.append(f"{s['name']}{lag}{fails}")
    return ", ".join(parts) or "-"


def table(doc: Mapping[str, Any], colour: bool = False) -> str:
    """The status as a terminal table: one line per office, then why anything is not green."""
    spool = doc["spool"]
    spool_text = (
        "off"
        if not spool["enabled"]
        else f"{spool['depth']} (oldest {duration(spool['oldest_age_s'])})"
        if spool["depth"]
        else "0"
    )
    header = ("OFFICE", "STATE", "SUBSCRIPTIONS", "LAST EVENTS", "SPOOL", "BROKER")
    rows = [header]
    for o in doc["offices"]:
        events = ", ".join(f"{t} {duration(e['age_s'])} ago" for t, e in o["events"].items())
        rows.append(
            (
                o["customer"],
                _WORD[o["status"]],
                _subs_cell(o),
                events or "-",
                spool_text,
                doc["broker"]["state"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=True)]
        if colour and i > 0:
            state = doc["offices"][i - 1]["status"]
            cells[1] = f"{_ANSI[state]}{cells[1]}\033[0m"
        lines.append("  ".join(cells).rstrip())
    for o in doc["offices"]:
        lines += [f"{o['customer']}: {reason}" for reason in o["reasons"]]
    return "\n".join(lines)
