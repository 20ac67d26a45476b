"""The syncer in the daemon: plan every interval, apply when leader (exclusive-queue lock)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelLockedResource

from ..broker import connect_any, connection_name, shuffled
from ..config import Config
from ..config_customer import Customer
from ..errors import ConfigError, OpenDentalError, PublishError
from ..publisher import BROKER_ERRORS
from .apply import Outcome, apply
from .client import OpenDentalClient
from .plan import Plan, desired, plan

log = logging.getLogger("od_bridge.syncer")
ClientFactory = Callable[[Customer], OpenDentalClient]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """One customer's sync: the plan, what apply did (if it ran), or the error that stopped it."""

    customer: str
    plan: Plan | None = None
    outcomes: tuple[Outcome, ...] = ()
    applied: bool = False
    error: str | None = None
    # The office's subscriptions as last listed (after an apply that changed something, listed
    # again): liveness reads DateTimeStart and the failure fields from it. None: listing failed.
    listing: tuple[dict[str, Any], ...] | None = None

    @property
    def failed(self) -> bool:
        """True when listing failed or any applied action failed."""
        return self.error is not None or any(not o.ok for o in self.outcomes)


async def sync_customer(
    config: Config, customer: Customer, client: OpenDentalClient, *, do_apply: bool
) -> SyncResult:
    """Plan one customer against its office (and apply when asked); errors become the result."""
    now = datetime.now(customer.zone).replace(tzinfo=None)
    try:
        actual = await client.list_subscriptions()
        the_plan = plan(
            customer.name,
            desired(customer, config),
            actual,
            public_url=config.public_url,
            prune=config.sync.prune,
            now=now,
        )
        if not do_apply or not the_plan.pending:
            return SyncResult(customer.name, the_plan, listing=tuple(actual))
        outcomes = await apply(
            the_plan, client, now=lambda: datetime.now(customer.zone).replace(tzinfo=None)
        )
    except OpenDentalError as exc:
        return SyncResult(customer.name, error=str(exc))
    listing = tuple(actual)
    if any(o.ok for o in outcomes):
        # What changed is what liveness must see (a created subscription is not absent).
        with contextlib.suppress(OpenDentalError):
            listing = tuple(await client.list_subscriptions())
    return SyncResult(customer.name, the_plan, tuple(outcomes), applied=True, listing=listing)


def customers_to_sync(config: Config, names: Sequence[str] = ()) -> list[Customer]:
    """The customers with an `api:` section, limited to `names` (ConfigError for an unknown one)."""
    known = {c.name: c for c in config.customers}
    problems = [f"--customer: no customer named {n}" for n in names if n not in known]
    if problems:
        raise ConfigError(problems)
    chosen = [known[n] for n in names] if names else list(config.customers)
    without = [c.name for c in chosen if c.api is None]
    if names and without:
        raise ConfigError([f"--customer: {n} has no api: section to sync with" for n in without])
    return [c for c in chosen if c.api is not None]


class LeaderLock:
    """Leadership = holding the exclusive queue `{prefix}.syncer.lock` on a live connection."""

    def __init__(
        self, amqp_urls: str | Sequence[str], queue: str, timeout_s: float = 10.0, name: str = ""
    ) -> None:
        urls = [amqp_urls] if isinstance(amqp_urls, str) else amqp_urls
        self._urls = shuffled(urls)  # any node of a cluster will do
        self.queue = queue
        self.timeout_s = timeout_s
        self.name = name or connection_name(None, "syncer lock")
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lost = True  # set by the connection's close callback

    @property
    def held(self) -> bool:
        """True while our connection holding the queue is open."""
        # Not conn.is_closed alone: aio-pika leaves it False after the server closed or reset
        # the connection (its node died), which would leave two leaders.
        return self._conn is not None and not self._conn.is_closed and not self._lost

    async def acquire(self) -> bool:
        """Try once to become (or stay) leader; False when another replica holds the lock."""
        if self.held:
            if await self._still_ours():
                return True
            log.warning("syncer lock lost: its queue is gone or held by another replica")
        await self.release()
        # A plain (not robust) connection: when it drops, the broker frees the queue and we
        # must compete again rather than silently re-declare it behind another leader.
        conn, _ = await connect_any(self._urls, name=self.name, connect_timeout=self.timeout_s)
        try:
            channel = await asyncio.wait_for(conn.channel(), self.timeout_s)
            await asyncio.wait_for(
                channel.declare_queue(self.queue, exclusive=True, auto_delete=True), self.timeout_s
            )
        except ChannelLockedResource:
            await conn.close()
            return False
        except BaseException:
            await conn.close()
            raise
        self._conn, self._channel, self._lost = conn, channel, False
        conn.close_callbacks.add(self._on_close)
        return True

    async def _still_ours(self) -> bool:
        """Ask the broker whether the queue is still ours: an open connection is not proof.

        RabbitMQ 3.10 deletes a dead node's transient queues on every surviving node, listing
        their names in one transaction and deleting by name in another; a lock queue declared
        between the two (a new leader taking over) loses its record and a third replica can
        declare it again. A passive declare answers NOT_FOUND or RESOURCE_LOCKED then, so two
        leaders last at most one pass.
        """
        assert self._channel is not None
        try:
            await asyncio.wait_for(
                self._channel.declare_queue(self.queue, passive=True), self.timeout_s
            )
        except BROKER_ERRORS:
            return False
        return True

    def _on_close(self, sender: object, *_: object) -> None:
        if sender is self._conn:
            self._lost = True

    async def release(self) -> None:
        """Give up leadership (closing the connection frees the queue)."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and not conn.is_closed:
            await conn.close()


class SyncLoop:
    """Keeps the offices' subscriptions in line with the configuration, inside the daemon.

    `SyncLoop(config, client_factory=OpenDentalClient.for_customer, amqp_url=None,
    lock=True, lock_queue=None, on_result=None)`: `amqp_url` defaults to `config.amqp.url`;
    `lock=False` makes this replica always the leader (single instance); `lock_queue` defaults
    to `{exchange_prefix}.syncer.lock`; `on_result(SyncResult, leader)` is called once per
    customer per run (count drift / applied / failed there). Use `await run_once()` for one
    pass, or `await run(stop_event)` for the loop (pass at start, then every `sync.interval_s`);
    `await aclose()` releases the lock and the HTTP sessions. `sync.mode: off` does nothing,
    `plan` only logs drift, `apply` applies when this replica holds the lock.
    """

    def __init__(
        self,
        config: Config,
        client_factory: ClientFactory = OpenDentalClient.for_customer,
        amqp_url: str | None = None,
        *,
        lock: bool = True,
        lock_queue: str | None = None,
        on_result: Callable[[SyncResult, bool], None] | None = None,
    ) -> None:
        self.config = config
        self._factory = client_factory
        self._on_result = on_result
        self._clients: dict[str, OpenDentalClient] = {}  # kept: pacing spans runs
        queue = lock_queue or f"{config.amqp.exchange_prefix}.syncer.lock"
        urls = [amqp_url] if amqp_url else config.amqp.urls
        name = connection_name(config.amqp.connection_name, "syncer lock")
        self.lock = LeaderLock(urls, queue, name=name) if lock else None

    async def _leader(self) -> bool:
        if self.lock is None:
            return True
        try:
            return await self.lock.acquire()
        except (*BROKER_ERRORS, PublishError) as exc:
            log.warning(
                "syncer lock unavailable; planning only", extra={"error": type(exc).__name__}
            )
            return False

    async def run_once(self) -> list[SyncResult]:
        """One pass: plan every customer; apply when mode is apply and we hold the lock."""
        mode = self.config.sync.mode
        if mode == "off":
            return []
        leader = mode == "apply" and await self._leader()
        results = []
        for customer in customers_to_sync(self.config):
            client = self._clients.get(customer.name)
            if client is None:
                client = self._clients[customer.name] = self._factory(customer)
            result = await sync_customer(self.config, customer, client, do_apply=leader)
            self._log(result, leader)
            if self._on_result is not None:
                self._on_result(result, leader)
            results.append(result)
        return results

    def _log(self, result: SyncResult, leader: bool) -> None:
        extra: dict[str, Any] = {"customer": result.customer, "leader": leader}
        if result.error is not None:
            log.error("subscription sync failed", extra=extra | {"error": result.error})
            return
        assert result.plan is not None
        pending = result.plan.pending
        extra |= {"pending": len(pending), "summary": result.plan.summary()}
        if result.applied:
            failed = [o for o in result.outcomes if not o.ok]
            extra |= {"applied": len(result.outcomes) - len(failed), "failed": len(failed)}
            for o in failed:
                log.error(
                    "subscription change failed",
                    extra=extra
                    | {"op": o.action.op, "subscription": o.action.label, "error": o.detail},
                )
            log.info("subscriptions applied", extra=extra)
        elif pending:
            log.warning(
                "subscriptions drifted",
                extra=extra | {"drift": [f"{a.op} {a.label}" for a in pending]},
            )
        else:
            log.info("subscriptions in sync", extra=extra)

    async def run(self, stop: asyncio.Event) -> None:
        """Run a pass now and every `sync.interval_s` until `stop` is set; then release."""
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception:  # task boundary: one bad pass must not end the loop
                    log.exception("subscription sync pass crashed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.sync.interval_s)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Release the lock and close the API clients."""
        if self.lock is not None:
            await self.lock.release()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


async def sync_all(
    config: Config,
    customers: Sequence[Customer],
    *,
    do_apply: bool,
    client_factory: ClientFactory = OpenDentalClient.for_customer,
) -> list[SyncResult]:
    """One pass over `customers` with fresh clients (the `od-bridge sync` command)."""
    results = []
    for customer in customers:
        async with client_factory(customer) as client:
            results.append(await sync_customer(config, customer, client, do_apply=do_apply))
    return results
