"""Readable text for `od-bridge sync`: the plan as a table, and what apply did."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .apply import Outcome
from .plan import Action, Plan

_PAST = {"create": "created", "update": "updated", "delete": "deleted"}
_IN_COLUMNS = ("WatchTable", "UiEventType", "Workstation")  # already in their own columns
_HEADER = ("CUSTOMER", "ACTION", "SUBSCRIPTION", "WORKSTATION", "NUM", "DETAILS")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return repr(value) if value == "" or " " in value else value
    return str(value)


def details(action: Action) -> str:
    """What changes (`field: old → new`), what a create sends, or why nothing happens."""
    if action.op == "update":
        return "; ".join(f"{c.field}: {_value(c.old)} → {_value(c.new)}" for c in action.changes)
    if action.op == "create":
        shown = (c for c in action.changes if c.field not in _IN_COLUMNS)
        return " ".join(f"{c.field}={_value(c.new)}" for c in shown)
    return action.reason


def _row(customer: str, action: Action) -> tuple[str, ...]:
    return (
        customer,
        action.op,
        action.label,
        action.workstation or "(all)",
        str(action.num) if action.num is not None else "-",
        details(action),
    )


def table(plans: Iterable[Plan], failed: Sequence[str] = ()) -> str:
    """One line per subscription, aligned, with a summary line per customer.

    `failed` names customers that could not be planned (their reason is printed apart): no
    summary may then claim that nothing is wanted.
    """
    plans = list(plans)
    if not plans and failed:
        return ""
    rows = [_HEADER] + [_row(p.customer, a) for p in plans for a in p.actions]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ]
    if len(rows) == 1 and not failed:
        lines.append("(no subscriptions, none wanted)")
    lines += [f"{p.customer}: {p.summary()}" for p in plans]
    return "\n".join(line.rstrip() for line in lines)


def outcome(customer: str, done: Outcome) -> str:
    """`created WatchTable Appointment (OD-SERVER) #15`, or `FAILED …: reason`."""
    a = done.action
    where = f" ({a.workstation})" if a.workstation else ""
    num = f" #{done.num}" if done.num is not None else ""
    if not done.ok:
        return f"{customer}: FAILED to {a.op} {a.label}{where}{num}: {done.detail}"
    note = f" ({done.detail})" if done.detail else ""
    what = f": {details(a)}" if a.op == "update" else ""
    return f"{customer}: {_PAST[a.op]} {a.label}{where}{num}{what}{note}"
