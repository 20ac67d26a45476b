"""Composition root: builds the parts, owns the background tasks, shuts down in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
from contextlib import suppress

from aiohttp import web

from . import log as logsetup
from .config import Config
from .errors import BridgeError
from .metrics import Metrics
from .publisher import AmqpPublisher
from .receiver import build_app

log = logging.getLogger("od_bridge.service")

SHUTDOWN_GRACE_S = 10.0


class Service:
    """One running bridge: publisher, HTTP listener and background loops."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.publisher = AmqpPublisher(config.amqp)
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    def _ssl(self) -> ssl.SSLContext | None:
        tls = self.config.listen.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as exc:
            raise BridgeError(f"listen.tls: cannot load certificate or key ({exc})") from exc
        return context

    async def start(self) -> None:
        """Connect (or keep trying in the background) and start listening."""
        await self.publisher.start(wait=False)
        app = build_app(self.config, self.publisher, self.metrics)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await self.runner.setup()
        listen = self.config.listen
        site = web.TCPSite(
            self.runner, listen.host, listen.port, ssl_context=self._ssl(), backlog=1024
        )
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            await self.publisher.close()
            raise BridgeError(
                f"cannot listen on {listen.host}:{listen.port} ({exc.strerror})"
            ) from exc
        server = site._server  # the bound port, also when port 0 asked for any free one
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else listen.port
        log.info("listening", extra={"host": listen.host, "port": self.port, "path": listen.path})

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, then close the broker connection."""
        if self.runner is not None:
            await self.runner.cleanup()
        await self.publisher.close()
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
    finally:
        await service.stop()


def serve(config: Config, *, log_format: str | None = None, log_level: str | None = None) -> int:
    """`od-bridge serve`: run until SIGTERM/SIGINT, then shut down cleanly."""
    logsetup.configure(log_level or config.log.level, log_format or config.log.format)
    with suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run(config, stop)

    asyncio.run(main())
    return 0
