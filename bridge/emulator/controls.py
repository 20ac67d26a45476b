"""The emulator's `/emulator/*` controls: stats, pause/resume, select a patient, change rows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .api import answer

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger("od_bridge.emulator")


def control_routes(emulator: Emulator) -> list[web.RouteDef]:
    """The routes that drive one emulator from outside (tests, demos, benchmarks)."""

    async def stats(_: web.Request) -> web.Response:
        return answer(emulator.stats())

    async def select(request: web.Request) -> web.Response:
        num = request.match_info["num"]
        if not num.isdigit():
            return answer("PatNum must be a number.", 400)
        statuses = await emulator.select_patient(int(num), request.query.get("workstation"))
        return answer({"sent": len(statuses), "statuses": statuses})

    async def change(request: web.Request) -> web.Response:
        n = request.query.get("n", "1")
        name = request.match_info["table"]
        if not n.isdigit() or not name.isidentifier():
            return answer("usage: POST /emulator/change/{Table}?n=COUNT", 400)
        return answer({"changed": len(emulator.change_rows(name, int(n)))})

    def pause(paused: bool) -> Any:
        async def handler(_: web.Request) -> web.Response:
            emulator.paused = paused
            log.info("office paused" if paused else "office resumed")
            return answer({"paused": emulator.paused})

        return handler

    return [
        web.get("/emulator/stats", stats),
        web.post("/emulator/office/pause", pause(True)),
        web.post("/emulator/office/resume", pause(False)),
        web.post("/emulator/select/{num}", select),
        web.post("/emulator/change/{table}", change),
    ]
