"""Office liveness: what the syncer and the receiver last saw per office, as metrics and colours."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import Config
from .config_customer import Customer
from .opendental import parse_datetime
from .sync.plan import desired, is_expired, is_managed, key_of

# The alert thresholds (deploy/monitoring/rules.yml uses the same numbers; a test checks it).
SILENT_FACTOR = 3  # an office is silent when a subscription's lag exceeds 3 polls …
SILENT_SLACK_S = 300  # … plus 5 minutes (a slow cycle, a restart of the API Service)
HORIZON_RISK_S = 48 * 3600  # Open Dental resends 72 h back: past 48 h rows are about to be lost
SPOOL_OLDEST_WARN_S = 900  # a spooled row older than 15 min: the broker has been away too long

GREEN, AMBER, RED = "green", "amber", "red"
_RANK = {GREEN: 0, AMBER: 1, RED: 2}
SubKey = tuple[str, str]  # (kind, name) as configured: the labels, bounded by the config


def worst(*colours: str) -> str:
    """The most severe of the colours (green when none)."""
    return max(colours, key=_RANK.__getitem__, default=GREEN)


def silent_after_s(polling_s: float) -> float:
    """Lag beyond which a database subscription counts as silent (the OfficeSilent alert)."""
    return SILENT_FACTOR * polling_s + SILENT_SLACK_S


@dataclass(frozen=True, slots=True)
class SubscriptionSeen:
    """One wanted subscription as the office's listing showed it (absent: `present` False)."""

    kind: str
    name: str
    present: bool
    polling_s: int = 0
    start: float | None = None  # DateTimeStart as Unix time (database subscriptions)
    failing: bool = False  # FailureReason non-empty
    reason: str = ""
    failures: int | None = None  # SubsequentFailures, on versions that report it
    last_failure: float | None = None  # DateTimeLastFailure as Unix time
    next_retry: float | None = None  # DateTimeNextRetry as Unix time
    # When the lag is measured: the listing's time, so it stays put between passes (a long
    # sync.interval_s never looks like silence); None while listings fail: it keeps growing.
    as_of: float | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """The last sync pass's listing of one office: when, whether it worked, why not."""

    at: float
    ok: bool
    error: str = ""
    last_ok: float | None = None


def _unix(value: Any, zone: Any) -> float | None:
    """An Open Dental office-local date-time as Unix time (None for never or unparsable)."""
    parsed = parse_datetime(value)
    return parsed.replace(tzinfo=zone).timestamp() if parsed is not None else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _merge(a: SubscriptionSeen, b: SubscriptionSeen) -> SubscriptionSeen:
    """Two wanted subscriptions on one label set (other workstations): keep the worse one."""

    def badness(s: SubscriptionSeen) -> tuple[bool, float, bool]:
        return not s.present, -(s.start if s.start is not None else float("inf")), s.failing

    return max(a, b, key=badness)


def seen(
    customer: Customer, wanted: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]],
    *, public_url: str, now: datetime, as_of: float | None = None,
) -> dict[SubKey, SubscriptionSeen]:  # fmt: skip
    """PURE: each wanted subscription matched to the live one that fires it, or absent."""
    zone = customer.zone
    live = [s for s in actual if not is_expired(s, now)]
    out: dict[SubKey, SubscriptionSeen] = {}
    for want in wanted:
        kind, name, ws = key_of(want)
        label = (kind, str(want.get("WatchTable") or want.get("UiEventType") or ""))
        # Ours, or an office-made one to the same URL (plan leaves it alone: it fires for us).
        candidates = [
            s for s in live
            if key_of(s)[:2] == (kind, name)
            and (is_managed(s, public_url) or s.get("EndPointUrl") == want.get("EndPointUrl"))
        ]  # fmt: skip
        exact = [s for s in candidates if key_of(s)[2] == ws]
        sub = exact[0] if exact else candidates[0] if candidates else None
        if sub is None:
            found = SubscriptionSeen(*label, present=False)
        else:
            reason = str(sub.get("FailureReason") or "").strip()
            found = SubscriptionSeen(
                *label,
                present=True,
                polling_s=_int(sub.get("PollingSeconds")) or 0,
                start=_unix(sub.get("DateTimeStart"), zone) if kind == "db" else None,
                failing=bool(reason),
                reason=reason[:200],
                failures=_int(sub.get("SubsequentFailures")),
                last_failure=_unix(sub.get("DateTimeLastFailure"), zone),
                next_retry=_unix(sub.get("DateTimeNextRetry"), zone),
                as_of=as_of,
            )
        out[label] = _merge(out[label], found) if label in out else found
    return out


class Health(Collector):  # named: prometheus-client before 0.21 checks the base, not the shape
    """What was last seen of every office; also a Prometheus collector computing at scrape time.

    `observed()` takes each sync pass's listing (or its error), `event()` each accepted request.
    A lag is measured at its listing's time; while listings fail it is measured when read,
    from the last DateTimeStart seen, so it keeps growing as the office's silence would.
    """

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.customers = {c.name: c for c in config.customers}
        self.subscriptions: dict[str, dict[SubKey, SubscriptionSeen]] = {}
        self.listings: dict[str, Listing] = {}
        self.events: dict[str, dict[str, float]] = {}

    def event(self, customer: str, type_label: str) -> None:
        """A request of `type_label` (already bounded) from `customer` was accepted just now."""
        self.events.setdefault(customer, {})[type_label] = self.clock()

    def observed(
        self, customer: str, listing: Sequence[Mapping[str, Any]] | None, error: str | None
    ) -> None:
        """One sync pass's result for `customer`: its subscription listing, or why it failed."""
        now = self.clock()
        before = self.listings.get(customer)
        if listing is None:
            last_ok = before.last_ok if before else None
            self.listings[customer] = Listing(now, False, error or "listing failed", last_ok)
            subs = self.subscriptions.get(customer, {})
            self.subscriptions[customer] = {k: replace(s, as_of=None) for k, s in subs.items()}
            return
        c = self.customers[customer]
        office_now = datetime.fromtimestamp(now, c.zone).replace(tzinfo=None)
        self.subscriptions[customer] = seen(
            c,
            desired(c, self.config),
            listing,
            public_url=self.config.public_url,
            now=office_now,
            as_of=now,
        )
        self.listings[customer] = Listing(now, True, last_ok=now)

    def lag(self, sub: SubscriptionSeen) -> float | None:
        """Office-now minus DateTimeStart, in seconds, for a present database subscription."""
        if sub.start is None:
            return None
        return max(0.0, (sub.as_of if sub.as_of is not None else self.clock()) - sub.start)

    def colour(self, sub: SubscriptionSeen) -> str:
        """Red: absent or silent (the OfficeSilent alert); amber: failing; else green."""
        lag = self.lag(sub)
        if not sub.present or (lag is not None and lag > silent_after_s(sub.polling_s)):
            return RED
        return AMBER if sub.failing or (sub.failures or 0) > 0 else GREEN

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The liveness gauges (prometheus_client's Collector protocol)."""
        labels = ["customer", "kind", "name"]
        fams = {
            "lag": GaugeMetricFamily(
                "od_bridge_subscription_lag_seconds",
                "Office-now minus the subscription's DateTimeStart (database subscriptions).",
                labels=labels,
            ),
            "polling": GaugeMetricFamily(
                "od_bridge_subscription_polling_seconds",
                "The subscription's PollingSeconds on the office side.",
                labels=labels,
            ),
            "present": GaugeMetricFamily(
                "od_bridge_subscription_present",
                "1 when a wanted subscription exists (not expired) on the office side, else 0.",
                labels=labels,
            ),
            "failing": GaugeMetricFamily(
                "od_bridge_subscription_failing",
                "1 while the office reports a FailureReason for the subscription.",
                labels=labels,
            ),
            "failures": GaugeMetricFamily(
                "od_bridge_subscription_failures",
                "SubsequentFailures as the office reports it (newer Open Dental versions).",
                labels=labels,
            ),
            "last_failure": GaugeMetricFamily(
                "od_bridge_subscription_last_failure_timestamp_seconds",
                "DateTimeLastFailure of the subscription, as Unix time.",
                labels=labels,
            ),
        }
        for customer, subs in self.subscriptions.items():
            for (kind, name), sub in subs.items():
                values = [customer, kind, name]
                fams["present"].add_metric(values, 1.0 if sub.present else 0.0)
                if not sub.present:
                    continue
                fams["failing"].add_metric(values, 1.0 if sub.failing else 0.0)
                lag = self.lag(sub)
                if lag is not None:
                    fams["lag"].add_metric(values, lag)
                    fams["polling"].add_metric(values, float(sub.polling_s))
                if sub.failures is not None:
                    fams["failures"].add_metric(values, float(sub.failures))
                if sub.last_failure is not None:
                    fams["last_failure"].add_metric(values, sub.last_failure)
        yield from fams.values()
        ok = GaugeMetricFamily(
            "od_bridge_sync_listing_ok",
            "1 when the last sync pass could list the office's subscriptions, else 0.",
            labels=["customer"],
        )
        for customer, listing in self.listings.items():
            ok.add_metric([customer], 1.0 if listing.ok else 0.0)
        yield ok
        last = GaugeMetricFamily(
            "od_bridge_last_event_timestamp_seconds",
            "When the last request of this event type from this office was accepted (Unix time).",
            labels=["customer", "type"],
        )
        for customer, types in self.events.items():
            for type_label, at in types.items():
                last.add_metric([customer, type_label], at)
        yield last
