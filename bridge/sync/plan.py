"""PURE: the subscriptions a customer should have, and plan(desired, actual) → Plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..config import Config
from ..config_customer import MANAGED_NOTE, Customer
from ..opendental import NEVER, parse_datetime

Op = Literal["create", "update", "delete", "unchanged", "ignored"]
DEFAULT_POLLING_SECONDS = 60
ALL_WORKSTATIONS = "all workstations"  # 26.2.1+ spelling of "every machine" (blank before)
COMPARED = ("EndPointUrl", "Workstation", "PollingSeconds", "DateTimeStop", "Note")
Key = tuple[str, str, str]  # (kind, name, workstation), case-folded
Sub = Mapping[str, Any]  # a subscription object in Open Dental's field names


@dataclass(frozen=True, slots=True)
class Change:
    """One field that differs: Open Dental's name, the value there now, the value wanted."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Action:
    """One line of the plan: what happens to one subscription, and why."""

    op: Op
    kind: str  # "db" or "ui"
    name: str  # WatchTable or UiEventType
    workstation: str
    num: int | None = None
    changes: tuple[Change, ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict)  # what POST/PUT sends
    reason: str = ""

    @property
    def label(self) -> str:
        """`WatchTable Appointment` / `UiEventType PatientSelected`."""
        return f"{'WatchTable' if self.kind == 'db' else 'UiEventType'} {self.name}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Every action for one customer, in apply order (create, update, delete, then the rest)."""

    customer: str
    actions: tuple[Action, ...]

    def of(self, op: Op) -> tuple[Action, ...]:
        """The actions with this op."""
        return tuple(a for a in self.actions if a.op == op)

    @property
    def pending(self) -> tuple[Action, ...]:
        """Actions that change something (create, update, delete)."""
        return tuple(a for a in self.actions if a.op in ("create", "update", "delete"))

    def summary(self) -> str:
        """`1 to create, 0 to update, …`."""
        words = {"create": "to create", "update": "to update", "delete": "to delete"}
        ops: tuple[Op, ...] = ("create", "update", "delete", "unchanged", "ignored")
        return ", ".join(f"{len(self.of(op))} {words.get(op, op)}" for op in ops)


def _workstation(value: Any) -> str:
    text = str(value or "").strip()
    return "" if text.lower() == ALL_WORKSTATIONS else text


def desired(customer: Customer, config: Config) -> list[dict[str, Any]]:
    """The subscription objects `customer` should have, in Open Dental's field names."""
    out = []
    for sub in customer.subscriptions:
        url = sub.endpoint_url or f"{config.public_url}{config.listen.path}/{sub.name}"
        polling = (sub.polling_seconds or DEFAULT_POLLING_SECONDS) if sub.watch_table else 0
        table, event = sub.watch_table or "", sub.ui_event_type or ""
        stop = sub.date_time_stop or NEVER
        out.append(
            {"EndPointUrl": url, "Workstation": sub.workstation, "WatchTable": table}
            | {"PollingSeconds": polling, "UiEventType": event, "DateTimeStop": stop}
            | {"Note": sub.note}
        )
    return out


def key_of(sub: Sub) -> Key:
    """Identity of a subscription for matching: kind, table/event name, workstation."""
    table = str(sub.get("WatchTable") or "")
    kind, name = ("db", table) if table else ("ui", str(sub.get("UiEventType") or ""))
    return kind, name.casefold(), _workstation(sub.get("Workstation")).casefold()


def is_managed(sub: Sub, public_url: str) -> bool:
    """Ours: the Note carries the marker, or the EndPointUrl points at this bridge."""
    note, url = str(sub.get("Note") or ""), str(sub.get("EndPointUrl") or "")
    return MANAGED_NOTE in note or url.startswith(public_url)


def is_expired(sub: Sub, now: datetime) -> bool:
    """True when DateTimeStop is set and not in the future (Open Dental no longer fires it)."""
    stop = parse_datetime(sub.get("DateTimeStop"))
    return stop is not None and stop <= now


def _same(field_name: str, have: Any, want: Any) -> bool:
    if field_name == "DateTimeStop":
        return parse_datetime(have) == parse_datetime(want)
    if field_name == "Workstation":  # Windows machine names are case-insensitive
        return _workstation(have).casefold() == _workstation(want).casefold()
    if field_name == "PollingSeconds":
        try:
            return int(have) == int(want)
        except (TypeError, ValueError):
            return False
    return str(have if have is not None else "") == str(want)


def diff(actual: Sub, want: Sub) -> tuple[Change, ...]:
    """Compared fields that differ (never DateTimeStart; PollingSeconds on database subs only)."""
    fields = [f for f in COMPARED if f != "PollingSeconds" or want.get("WatchTable")]
    return tuple(
        Change(f, actual.get(f), want[f]) for f in fields if not _same(f, actual.get(f), want[f])
    )


def _action(op: Op, sub: Sub, **kw: Any) -> Action:
    num = sub.get("SubscriptionNum")
    name = str(sub.get("WatchTable") or sub.get("UiEventType") or "")
    ws, num = str(sub.get("Workstation") or ""), num if isinstance(num, int) else None
    return Action(op, key_of(sub)[0], name, ws, num, **kw)


def _create_body(wanted: Sub) -> dict[str, Any]:
    kind = ("WatchTable", "PollingSeconds") if wanted["WatchTable"] else ("UiEventType",)
    body = {f: wanted[f] for f in ("EndPointUrl", "Workstation", *kind)}
    stop, note = wanted["DateTimeStop"], wanted["Note"]
    return (
        body
        | ({"DateTimeStop": stop} if parse_datetime(stop) else {})
        | ({"Note": note} if note else {})
    )


def find_twin(theirs: Sequence[Sub], wanted: Sub) -> Sub | None:
    """The subscription Open Dental would call a duplicate of `wanted`, if any."""
    # An unmanaged subscription Open Dental would call a duplicate of the one we'd create.
    url, k = wanted["EndPointUrl"], key_of(wanted)
    return next((t for t in theirs if key_of(t) == k and t.get("EndPointUrl") == url), None)


def plan(
    customer: str,
    want: Sequence[Sub],
    actual: Iterable[Sub],
    *,
    public_url: str,
    prune: Literal["managed", "none"] = "managed",
    now: datetime | None = None,
) -> Plan:
    """PURE: the actions that make `actual` match `want`; never touches unmanaged subscriptions."""
    now = now or datetime.min
    ours: dict[Key, list[Sub]] = {}
    theirs: list[Sub] = []
    for sub in sorted(actual, key=lambda s: int(s.get("SubscriptionNum") or 0)):
        (ours.setdefault(key_of(sub), []) if is_managed(sub, public_url) else theirs).append(sub)
    by_op: dict[str, list[Action]] = {"create": [], "update": [], "delete": [], "rest": []}
    matched: list[tuple[Sub, list[Sub]]] = []
    unmatched: list[Sub] = []
    for wanted in want:  # exact (kind, name, workstation) first: re-runs stay idempotent
        candidates = ours.pop(key_of(wanted), [])
        if candidates:
            matched.append((wanted, candidates))
        else:
            unmatched.append(wanted)
    for wanted in unmatched:
        # A new workstation for a table we already watch: move ours with a PUT, which keeps
        # its DateTimeStart, so no change made meanwhile is skipped (delete + create would).
        same = next((k for k in ours if k[:2] == key_of(wanted)[:2]), None)
        twin = find_twin(theirs, wanted) if same is None else None
        if same is not None:
            matched.append((wanted, ours.pop(same)))
        elif twin is not None:
            theirs.remove(twin)
            why = "not managed by od-bridge, but already covers this one"
            by_op["rest"].append(_action("ignored", twin, reason=why))
        else:
            body = _create_body(wanted)
            changes = tuple(Change(f, None, v) for f, v in body.items())
            by_op["create"].append(_action("create", wanted, changes=changes, body=body))
    keep_reason = "kept (prune: none)"
    for wanted, candidates in matched:
        # Keep the closest match; others are duplicates (an interrupted run, a hand copy).
        keep = min(candidates, key=lambda s: len(diff(s, wanted)))
        changes = diff(keep, wanted)
        op: Op = "update" if changes else "unchanged"
        body = {c.field: c.new for c in changes}
        by_op["update" if changes else "rest"].append(_action(op, keep, changes=changes, body=body))
        dup = "duplicate of another managed subscription"
        for extra in (c for c in candidates if c is not keep):
            if prune == "managed":
                by_op["delete"].append(_action("delete", extra, reason=dup))
            else:
                by_op["rest"].append(_action("unchanged", extra, reason=f"{dup}, {keep_reason}"))
    for sub in (s for subs in ours.values() for s in subs):
        if prune != "managed":
            reason = f"not in the configuration, {keep_reason}"
            by_op["rest"].append(_action("unchanged", sub, reason=reason))
        elif is_expired(sub, now):
            by_op["rest"].append(_action("unchanged", sub, reason="retired (DateTimeStop passed)"))
        else:
            by_op["delete"].append(_action("delete", sub, reason="not in the configuration"))
    by_op["rest"] += [_action("ignored", sub, reason="not managed by od-bridge") for sub in theirs]
    ordered = (a for op in ("create", "update", "delete", "rest") for a in by_op[op])
    return Plan(customer, tuple(ordered))
