"""Prometheus metrics of one bridge process, in a registry of its own (tests build several)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
# `_created` series double the output and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Every metric the bridge exports (names follow Prometheus conventions)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "od_bridge_requests_total",
            "Webhook requests answered, by customer, event type (known types, else 'other') and "
            "HTTP status ('client_closed': the client went away mid-body).",
            ["customer", "type", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "od_bridge_request_duration_seconds",
            "Time from request start to answer.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "od_bridge_auth_failures_total", "Requests with a missing or unknown key.", registry=r
        )
        self.rejected = Counter(
            "od_bridge_rejected_requests_total",
            "Requests refused before publishing, by status (400, 401, 403, 408, 413, 417, 429).",
            ["status"],
            registry=r,
        )
        self.rows_published = Counter(
            "od_bridge_rows_published_total",
            "Rows confirmed by the broker, by customer and event type.",
            ["customer", "type"],
            registry=r,
        )
        self.rows_spooled = Counter(
            "od_bridge_rows_spooled_total", "Rows committed to the local spool.", registry=r
        )
        self.rows_drained = Counter(
            "od_bridge_rows_drained_total",
            "Spooled rows republished and confirmed by the broker.",
            registry=r,
        )
        self.spool_fallbacks = Counter(
            "od_bridge_spool_fallbacks_total",
            "Requests whose rows went to the spool, by cause (returned, nacked, timeout, "
            "disconnected).",
            ["cause"],
            registry=r,
        )
        self.spool_fallback_cause = Enum(
            "od_bridge_spool_fallback_cause",
            "Why rows last went to the spool instead of the broker.",
            states=["none", "returned", "nacked", "timeout", "disconnected"],
            registry=r,
        )
        self.rows_parked = Counter(
            "od_bridge_rows_parked_total",
            "Spooled rows RabbitMQ returned (no route), set aside so the rest drains.",
            registry=r,
        )
        self.spool_parked = Gauge(
            "od_bridge_spool_parked",
            "Rows parked in the spool (see 'od-bridge spool parked').",
            registry=r,
        )
        self.spool_depth = Gauge(
            "od_bridge_spool_depth", "Rows waiting in the local spool.", registry=r
        )
        self.spool_damaged = Gauge(
            "od_bridge_spool_damaged",
            "1 while the spool file is removed, replaced, truncated or corrupt (503, not ready).",
            registry=r,
        )
        self.spool_unreadable = Gauge(
            "od_bridge_spool_unreadable_rows",
            "Rows in a damaged spool that could not be read (salvage them after a restart).",
            registry=r,
        )
        self.spool_set_aside = Counter(
            "od_bridge_spool_set_aside_total",
            "Damaged spool files set aside at start (recover with `od-bridge spool salvage`).",
            registry=r,
        )
        self.spool_oldest_age = Gauge(
            "od_bridge_spool_oldest_age_seconds",
            "Age of the oldest row waiting in the spool (0 when empty), read at scrape time.",
            registry=r,
        )
        self.confirm_seconds = Histogram(
            "od_bridge_publish_confirm_duration_seconds",
            "Time to get every row of one request confirmed by the broker.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.unrouted_depth = Gauge(
            "od_bridge_unrouted_depth",
            "Messages waiting in {prefix}.unrouted (events nobody has bound a queue for yet).",
            registry=r,
        )
        self.connections_open = Gauge(
            "od_bridge_http_connections_open", "HTTP connections open now.", registry=r
        )
        self.connections_closed = Counter(
            "od_bridge_http_connections_closed_total",
            "HTTP connections the bridge closed on a peer, by reason (header_timeout: request "
            "headers too slow; limit: listen.max_connections reached).",
            ["reason"],
            registry=r,
        )
        self.broker_up = Gauge(
            "od_bridge_broker_connected", "1 while connected to RabbitMQ.", registry=r
        )
        self.sync_drift = Gauge(
            "od_bridge_sync_pending_changes",
            "Subscription changes the last plan found, by customer.",
            ["customer"],
            registry=r,
        )
        self.sync_results = Counter(
            "od_bridge_sync_actions_total",
            "Subscription changes applied, by customer, action and outcome.",
            ["customer", "action", "outcome"],
            registry=r,
        )
        # process_* (memory, CPU, descriptors) and python_gc_* series, on this registry.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        Info("od_bridge_build", "Build information.", registry=r).info({"version": __version__})

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
