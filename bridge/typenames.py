"""Which event-type names get an exchange and a metric label of their own, so that no sender can
grow the broker or /metrics without bound by inventing names."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .events import exchange_name
from .opendental import KNOWN_TABLES, UNKNOWN, Table

log = logging.getLogger("od_bridge.receiver")

OTHER = "other"  # the shared metric label, and the catch-all exchange's suffix
_KNOWN = frozenset({t.name for t in KNOWN_TABLES} | {UNKNOWN})


class TypeNames:
    """Exchanges and labels per event type: known and configured names keep their own; the
    first `cap` other names get an exchange too; every later one goes to `{prefix}.{kind}.other`
    (the CloudEvent still carries its real type)."""

    def __init__(self, prefix: str, allowed: Iterable[str], cap: int) -> None:
        self.prefix = prefix
        self.cap = cap
        self._allowed = frozenset(name.lower() for name in allowed)
        self._admitted: set[str] = set()
        self._warned = False

    def label(self, table: Table) -> str:
        """The metric label: the type's name if the bridge knows it or the config names it."""
        if table.name in _KNOWN or table.name.lower() in self._allowed:
            return table.name
        return OTHER

    def exchange(self, table: Table) -> str:
        """The exchange for this type's rows."""
        own = exchange_name(self.prefix, table.kind, table.name)
        lowered = table.name.lower()
        if table.name in _KNOWN or lowered in self._allowed or lowered in self._admitted:
            return own
        if lowered != OTHER and len(self._admitted) < self.cap:
            self._admitted.add(lowered)
            # Once per new name (at most `cap` lines): a name is a word, never row data.
            log.info("new event type gets an exchange", extra={"exchange": own})
            return own
        if not self._warned:
            self._warned = True
            log.warning(
                "more unknown event types than amqp.max_unknown_types; the rest go to the "
                "catch-all exchange (list real new tables in allow_unknown)",
                extra={"exchange": exchange_name(self.prefix, table.kind, OTHER)},
            )
        return exchange_name(self.prefix, table.kind, OTHER)
