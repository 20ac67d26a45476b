"""Outbox: publish directly while the spool is empty, else spool; the drainer empties it FIFO."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from .errors import PublishError, SpoolError, SpoolFull
from .events import Message
from .metrics import Metrics
from .publisher import Publisher
from .spool import Spool

log = logging.getLogger("od_bridge.outbox")
PARKED_RETRY_S = 300  # parked rows go back to the spool's tail this often (a route may exist now)
SPOOL_RETRY_MAX_S = 10.0  # a spool that cannot delete or read: retry at most this far apart


class Outbox:
    """A Publisher that never answers 'confirmed' on hope: broker confirm, or spool commit."""

    def __init__(
        self,
        publisher: Publisher,
        spool: Spool | None,
        metrics: Metrics,
        *,
        ready_when: str = "durable",
    ) -> None:
        self.publisher = publisher
        self.spool = spool
        self.metrics = metrics
        self.ready_when = ready_when  # durable: broker or spool; broker: the broker only
        self.wake = asyncio.Event()  # set when the drainer has something to do
        self.spooling = False  # True from the first spooled row until the spool is empty again

    def _refusal(self) -> str | None:
        """Why a request cannot be made durable now, or None when it can."""
        spool = self.spool
        if spool is None:
            return None if self.publisher.ready else "broker disconnected"
        if spool.damage is not None:
            return spool.damage[1]  # a damaged spool refuses every row, also those for the broker
        if self.publisher.ready and spool.size == 0:
            return None  # straight to the broker
        return spool.room()  # into the spool: broker away, or rows waiting ahead of these

    @property
    def ready(self) -> bool:
        """True when a request can be made durable now (broker up, or room in the spool)."""
        return self._refusal() is None

    @property
    def reachable(self) -> bool:
        """True while the broker is worth trying."""
        return self.publisher.reachable

    @property
    def last_failure(self) -> str | None:
        """Why the broker last failed to confirm."""
        return self.publisher.last_failure

    def state(self) -> dict[str, Any]:
        """What /readyz reports: ready, broker state, spool depth, and why not when not.

        `broker: connected` only while a publish can be confirmed (the last one was), not
        merely while a TCP connection exists. With `listen.ready_when: broker` a replica
        that cannot confirm is not ready, so a balancer sends the traffic elsewhere.
        """
        refusal = self._refusal()
        confirming = self.publisher.ready
        if refusal is None and self.ready_when == "broker" and not confirming:
            refusal = "broker cannot confirm (listen.ready_when: broker)"
        state: dict[str, Any] = {
            "ready": refusal is None,
            "broker": "connected" if confirming else "disconnected",
            "spool": "disabled" if self.spool is None else self.spool.size,
        }
        if refusal is not None and (self.spool is not None or self.ready_when == "broker"):
            state["reason"] = refusal
        node = getattr(self.publisher, "node", None)
        if node is not None:
            state["node"] = node  # host:port of the RabbitMQ node this replica uses
        problem = getattr(self.publisher, "problem", None)
        if problem and not confirming:
            state["broker_error"] = problem  # why the last connect failed (no password)
        return state

    async def publish(self, messages: Sequence[Message]) -> bool:
        """Confirmed by the broker (True), or committed to the spool (False); else raise."""
        spool = self.spool
        if spool is None:
            return await self.publisher.publish(messages)
        if spool.damage is not None:
            # Said once by the spool; until it is whole again nothing is answered 200.
            raise SpoolError(f"the spool is unusable: {spool.damage[1]}")
        # While anything waits in the spool, new rows queue behind it: order across an outage.
        if spool.size == 0 and self.spooling:
            self.spooling = False
            log.info("spool drained; publishing directly again")
        rows = messages
        if spool.size == 0 and self.publisher.ready:
            try:
                return await self.publisher.publish(messages)
            except PublishError as exc:
                # Only what the broker did not confirm: confirmed rows are never sent twice.
                rows = [messages[i] for i in exc.pending(len(messages))]
                self._fallback(exc.cause, str(exc))
        else:
            self._fallback(self.publisher.last_failure or "disconnected", "")
        self.spooling = True
        await spool.append(rows)
        self.metrics.rows_spooled.inc(len(rows))
        self.wake.set()
        return False

    def _fallback(self, cause: str, error: str) -> None:
        """Count why rows went to the spool; one log line per outage, not one per request."""
        self.metrics.spool_fallbacks.labels(cause).inc()
        self.metrics.spool_fallback_cause.state(cause)
        if not self.spooling:
            log.warning("broker did not confirm; spooling", extra={"cause": cause, "error": error})


class Drainer:
    """Republishes spooled rows oldest-first and deletes each batch only after its confirms."""

    def __init__(
        self,
        spool: Spool,
        publisher: Publisher,
        metrics: Metrics,
        wake: asyncio.Event,
        *,
        batch: int = 1000,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.spool = spool
        self.publisher = publisher
        self.metrics = metrics
        self.wake = wake
        self.batch = batch
        self._size = batch  # the current batch size: halves on failure, grows back on success
        self.max_backoff_s = max_backoff_s
        self.drained = 0
        self.idle = asyncio.Event()  # set while the spool is empty and the drainer waits
        self._drained_when_idle = 0  # `drained` when the spool was last found empty
        # Runs first..last of rows confirmed by the broker whose delete has not committed (a
        # full disk): the delete is retried, and they are never published again meanwhile.
        self._undeleted: list[tuple[int, int]] = []
        self._spool_failing = False  # a spool failure is logged once, not once per retry

    async def run_once(self) -> int:
        """Publish and delete one batch; the number of rows drained (0 if empty)."""
        if self._undeleted:
            await self._delete_published()
        rows = await self.spool.peek(self._size)
        if not rows:
            return 0
        try:
            await self.publisher.publish([message for _, message in rows])
        except PublishError as exc:
            # Delete every row that was confirmed, not only those before the first failure:
            # a retried batch must not publish confirmed rows again (duplicate storms).
            unconfirmed = set(exc.pending(len(rows)))
            await self._forget(rows, unconfirmed)
            if exc.returned:
                # Returned (no route): a routing problem, not a broker failure. Set them aside
                # so they do not hold up the rows behind them (FIFO would stall the spool).
                await self._park([rows[i] for i in sorted(exc.returned)])
            if unconfirmed - exc.returned:
                self._size = max(self._size // 2, 10)
                raise
            return len(rows) - len(unconfirmed)
        await self._forget(rows, set())
        self._size = min(self._size * 2, self.batch)
        return len(rows)

    async def _park(self, rows: list[tuple[int, Message]]) -> None:
        moved = await self.spool.park([seq for seq, _ in rows], "returned by RabbitMQ (no route)")
        self.metrics.rows_parked.inc(moved)
        log.warning(
            "spooled rows parked: RabbitMQ returned them (no route); the rest drains on. They "
            "are retried every %d s, or by 'od-bridge spool retry'",
            PARKED_RETRY_S,
            extra={"rows": moved, "exchanges": sorted({m.exchange for _, m in rows})},
        )

    async def _forget(self, rows: list[tuple[int, Message]], unconfirmed: set[int]) -> None:
        """Count the confirmed rows as drained and delete them, one run of seqs at a time."""
        confirmed = len(rows) - len(unconfirmed)
        if not confirmed:
            return
        self.drained += confirmed  # confirmed by the broker: drained, deleted or not yet
        self.metrics.rows_drained.inc(confirmed)
        # Rows next to each other in a peek are next to each other in the spool: a run of
        # confirmed positions is one range of sequence numbers to delete.
        start: int | None = None
        for index, (seq, _) in enumerate(rows):
            if index in unconfirmed:
                if start is not None:
                    self._undeleted.append((start, rows[index - 1][0]))
                    start = None
            elif start is None:
                start = seq
        if start is not None:
            self._undeleted.append((start, rows[-1][0]))
        await self._delete_published()

    async def _delete_published(self) -> None:
        """Delete the published runs; on a full disk in ever smaller transactions."""
        while self._undeleted:
            first, last = self._undeleted[0]
            step = last - first + 1
            while first <= last:
                end = min(first + step - 1, last)
                try:
                    await self.spool.delete(first, end)
                except SpoolFull:
                    if step <= 10:
                        raise
                    step //= 2  # a smaller delete writes fewer pages: it may fit where this did not
                    continue
                first = end + 1
                self._undeleted[0] = (first, last)
            self._undeleted.pop(0)

    async def drain(self, deadline_s: float | None = None) -> int:
        """Drain until empty, a failure, or the deadline; rows drained."""
        total = 0
        stop_at = None if deadline_s is None else time.monotonic() + deadline_s
        while stop_at is None or time.monotonic() < stop_at:
            try:
                done = await self.run_once()
            except (PublishError, SpoolError) as exc:
                log.warning("drain stopped", extra={"error": str(exc)})
                break
            if done == 0:
                break
            total += done
        return total

    async def run(self) -> None:
        """Forever: drain when woken or when rows are left, backing off while the broker fails."""
        backoff, spool_backoff = 0.1, 0.5
        while True:
            if self.spool.size == 0:
                if self.drained != self._drained_when_idle:
                    await self._settle()
                self.wake.clear()
                self.idle.set()
                await self._idle()
                self.idle.clear()
            # Publishing into a blocked or absent connection only piles up frames that will
            # all time out: wait for the broker instead.
            if self.publisher.reachable:
                try:
                    await self.run_once()
                    backoff, spool_backoff = 0.1, 0.5
                    if self._spool_failing:
                        self._spool_failing = False
                        log.warning("spool drain going again", extra={"depth": self.spool.size})
                    continue
                except PublishError as exc:
                    log.info(
                        "spool drain waiting for the broker",
                        extra={"error": str(exc), "depth": self.spool.size, "retry_in_s": backoff},
                    )
                except SpoolError as exc:
                    # Not the broker: the spool cannot be read or a delete cannot commit (full
                    # disk). Published rows stay marked, so nothing is published twice.
                    if not self._spool_failing:
                        self._spool_failing = True
                        log.warning(
                            "spool drain stopped by the spool; retrying with backoff",
                            extra={"error": str(exc), "depth": self.spool.size},
                        )
                    spool_backoff = min(spool_backoff * 2, SPOOL_RETRY_MAX_S)
                    await self._pause(spool_backoff)
                    continue
                except Exception as exc:  # task boundary: the drainer must outlive any surprise
                    log.error("spool drain failed", exc_info=exc)
            await self._pause(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _idle(self) -> None:
        """Wait to be woken; with rows parked, put them back after PARKED_RETRY_S."""
        if not self.spool.parked:
            await self.wake.wait()
            return
        try:
            await asyncio.wait_for(self.wake.wait(), PARKED_RETRY_S)
        except TimeoutError:
            try:
                moved = await self.spool.retry_parked()
            except SpoolError as exc:
                log.warning("parked rows not retried", extra={"error": str(exc)})
                return
            log.info("parked rows put back in the spool for another try", extra={"rows": moved})

    async def _settle(self) -> None:
        """The spool was emptied: free SQLite's cache and the file's space (see Spool.shrink)."""
        self._drained_when_idle = self.drained
        try:
            await self.spool.shrink()
        except Exception as exc:  # an optimisation only: never stop the drainer for it
            log.info("spool not shrunk", extra={"error": type(exc).__name__})

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if woken (a reconnect wakes us)."""
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
