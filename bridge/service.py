"""Composition root: builds the parts, owns the background tasks, shuts down in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack, suppress
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from . import log as logsetup
from . import memory, server
from .config import Config
from .health import Health
from .listener import bind, tls_context
from .metrics import Metrics
from .ops import Ops, admin_app
from .outbox import Drainer, Outbox
from .publisher import AmqpPublisher
from .receiver import build_app
from .signals import on_stop_signals
from .spool import Spool
from .status import oldest_age
from .sync.loop import SyncLoop, SyncResult

log = logging.getLogger("od_bridge.service")

IN_FLIGHT_ON_STOP_S = 10.0  # after the listener closed: requests still running may finish
DRAIN_ON_STOP_S = 5.0
TRIM_EVERY_S = 30.0  # malloc_trim: RSS back down after a burst (memory.py)


class Service:
    """One running bridge: publisher, HTTP listener and background loops."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.metrics = Metrics()
        # Office liveness, read at scrape time; `clock` lets tests move time without waiting.
        self.health = Health(config, clock)
        self.metrics.registry.register(self.health)
        self.publisher = AmqpPublisher(config.amqp)
        self.spool = (
            Spool(
                config.spool.path,
                config.spool.max_events,
                reserve_bytes=config.spool.reserve_bytes,
            )
            if config.spool.enabled
            else None
        )
        self.outbox = Outbox(
            self.publisher, self.spool, self.metrics, ready_when=config.listen.ready_when
        )
        if self.spool is not None:
            spool = self.spool
            # Derived, so read when scraped rather than kept in step on every write.
            self.metrics.spool_depth.set_function(lambda: spool.size)
            self.metrics.spool_damaged.set_function(lambda: 0 if spool.damage is None else 1)
            self.metrics.spool_unreadable.set_function(lambda: spool.unreadable)
            self.metrics.spool_parked.set_function(lambda: spool.parked)
        self.drainer = (
            Drainer(self.spool, self.publisher, self.metrics, self.outbox.wake)
            if self.spool is not None
            else None
        )
        # A (re)connected broker is the drainer's cue: no need to wait out its backoff.
        self.publisher.on_ready.append(self.outbox.wake.set)
        self.syncer = SyncLoop(config, on_result=self._count_sync)
        self._sync_stop = asyncio.Event()
        self.synced = asyncio.Event()  # set after each customer's sync pass (tests await it)
        self.ops = Ops(
            config, self.metrics, self.health, self.outbox.state, self.spool, self._collect
        )
        self.port: int | None = None
        self.shutting_down = False  # set by wind_down(): /readyz answers 503 from then on
        self.admin_port: int | None = None
        self._stack: AsyncExitStack | None = None  # what start() built, unwound by stop()

    def _readiness(self) -> dict[str, Any]:
        """What /readyz reports: the outbox's state, or not ready once the bridge is leaving."""
        state = self.outbox.state()
        if self.shutting_down:
            state |= {"ready": False, "reason": "shutting down"}
        return state

    async def _collect(self) -> None:
        """Gauges read at scrape time: the unrouted queue's depth, the oldest spooled row's age."""
        depth = await self.publisher.unrouted_depth()
        if depth is not None:
            self.metrics.unrouted_depth.set(depth)
        if self.spool is not None:
            self.metrics.spool_oldest_age.set(await oldest_age(self.spool) or 0)

    def _count_sync(self, result: SyncResult, leader: bool) -> None:
        """Syncer results as metrics: pending drift per customer, applied actions by outcome."""
        if result.plan is not None:
            # After an apply, what is still pending is what failed.
            pending = (
                sum(not o.ok for o in result.outcomes)
                if result.applied
                else len(result.plan.pending)
            )
            self.metrics.sync_drift.labels(result.customer).set(pending)
        self.health.observed(result.customer, result.listing, result.error)
        if result.error is not None:
            self.metrics.sync_results.labels(result.customer, "list", "failed").inc()
        for outcome in result.outcomes:
            state = "ok" if outcome.ok else "failed"
            self.metrics.sync_results.labels(result.customer, outcome.action.op, state).inc()
        self.synced.set()

    async def start(self) -> None:
        """Build what can fail (TLS, sockets, spool) first, then connect, start the loops, serve.

        Everything is entered on one exit stack, so a failure at any step unwinds exactly what
        was built before it, and `stop()` unwinds it all in the shutdown order (the
        reverse of this one): stop accepting → finish in-flight requests → stop the loops →
        drain or keep the spool → close AMQP → close SQLite.
        """
        listen = self.config.listen
        async with AsyncExitStack() as stack:
            context = tls_context(listen.tls)
            app = build_app(
                self.config,
                self.outbox,
                self.metrics,
                ready=self._readiness,
                ops=self.ops,
            )
            app.middlewares.append(self._close_when_leaving)
            sockets = await bind(listen.host, listen.port)
            admin = self.config.admin.address
            admin_sockets = await bind(*admin, "admin.listen") if admin is not None else []
            for sock in (*sockets, *admin_sockets):
                stack.callback(sock.close)
            if self.spool is not None:
                stack.push_async_callback(self.spool.close)  # also right after a failed open
                await self.spool.open()
                if self.spool.set_aside is not None:
                    self.metrics.spool_set_aside.inc()
                if self.spool.size:
                    log.info(
                        "spool holds rows from a previous run", extra={"depth": self.spool.size}
                    )
            stack.push_async_callback(self.publisher.close)
            await self.publisher.start(wait=False)
            stack.push_async_callback(self._drain_or_keep)
            self._own(stack, memory.trim_every(TRIM_EVERY_S), "trim")
            if self.drainer is not None:
                self._own(stack, self.drainer.run(), "spool-drainer")
            syncer = asyncio.create_task(self.syncer.run(self._sync_stop), name="syncer")
            stack.push_async_callback(self._stop_syncer, syncer)
            runner = server.runner(app, listen, self.metrics, IN_FLIGHT_ON_STOP_S)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            for sock in sockets:
                await web.SockSite(runner, sock, ssl_context=context, backlog=1024).start()
            if admin_sockets:
                # /metrics and /status on a listener of their own (admin.listen), plain HTTP.
                admin_runner = web.AppRunner(
                    admin_app(self.ops), access_log=None, handle_signals=False
                )
                await admin_runner.setup()
                stack.push_async_callback(admin_runner.cleanup)
                for sock in admin_sockets:
                    await web.SockSite(admin_runner, sock).start()
            self._stack = stack.pop_all()
        self.port = sockets[0].getsockname()[1]  # the bound port, also when port 0 asked for any
        log.info("listening", extra={"host": listen.host, "port": self.port, "path": listen.path})
        if admin_sockets:
            self.admin_port = admin_sockets[0].getsockname()[1]
            log.info("admin pages listening", extra={"port": self.admin_port})

    @staticmethod
    def _own(stack: AsyncExitStack, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` as a task that the stack cancels and awaits on the way out."""
        task = asyncio.create_task(work, name=name)

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        stack.push_async_callback(cancel)

    async def _stop_syncer(self, task: asyncio.Task[None]) -> None:
        """Let a pass in progress finish briefly; a slow Open Dental must not hold up the stop."""
        self._sync_stop.set()
        done, _ = await asyncio.wait({task}, timeout=DRAIN_ON_STOP_S)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.syncer.aclose()

    async def _drain_or_keep(self) -> None:
        """On the way out: publish what the spool holds while the broker is up, keep the rest."""
        if self.drainer is not None and self.spool is not None and self.spool.size:
            if self.publisher.reachable:
                await self.drainer.drain(DRAIN_ON_STOP_S)
            log.info("spool kept for the next start", extra={"depth": self.spool.size})

    async def wind_down(self, cut_short: asyncio.Event) -> None:
        """Not ready any more, yet still accepting, for `listen.shutdown_grace_s` (or until
        `cut_short` is set): load balancers and Kubernetes stop sending before the listener
        closes, so a POST already on its way still gets its 200."""
        self.shutting_down = True
        grace = self.config.listen.shutdown_grace_s
        if grace <= 0:
            return
        log.info("shutting down: not ready, still accepting", extra={"grace_s": grace})
        with suppress(TimeoutError):
            await asyncio.wait_for(cut_short.wait(), grace)

    @web.middleware
    async def _close_when_leaving(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        # During the grace: answer, then close the connection, so a client (a load balancer,
        # Open Dental) sends its next request over a new one, to a replica that is staying.
        response = await handler(request)
        if self.shutting_down:
            response.force_close()  # also makes aiohttp say `Connection: close`
        return response

    async def stop(self) -> None:
        """Unwind what `start()` built, in the shutdown order; a second call does nothing."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
            log.info("stopped")


async def run(config: Config, stop: asyncio.Event) -> None:
    """Run the service until `stop` is set."""
    service = Service(config)
    await service.start()
    # Everything built so far (modules, config, app, connection) lives as long as the process:
    # keep it out of the cyclic GC's view, so full collections under load walk less and do
    # not touch those pages again.
    gc.freeze()
    try:
        await stop.wait()
        stop.clear()  # from here on, a second SIGTERM/SIGINT cuts the grace short
        await service.wind_down(stop)
    finally:
        await service.stop()


def serve(config: Config, *, log_format: str | None = None, log_level: str | None = None) -> int:
    """`od-bridge serve`: run until SIGTERM/SIGINT, then shut down cleanly."""
    logsetup.configure(log_level or config.log.level, log_format or config.log.format)
    memory.limit_arenas()  # per process, before the spool's thread exists
    with suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def main() -> None:
        stop = asyncio.Event()
        on_stop_signals(asyncio.get_running_loop(), stop.set)
        await run(config, stop)

    asyncio.run(main())
    return 0
