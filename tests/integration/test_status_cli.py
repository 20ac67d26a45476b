"""`od-bridge status` and the admin listener against a running daemon syncing an emulated office."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from bridge.cli import main
from bridge.config_loader import parse
from bridge.statuscli import status_url

from .offices import POLLING_S, OfficeSpec, running

pytestmark = pytest.mark.integration


async def test_status_command_prints_the_daemons_table(
    prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = "admin: {listen: '127.0.0.1:0', allowed_networks: [127.0.0.1/32]}"
    specs = [OfficeSpec("main-office"), OfficeSpec("north-clinic", "America/New_York")]
    async with running(prefix, specs, extra=admin) as run:
        run.emulators["main-office"].change_rows("Appointment", 2)
        run.advance(POLLING_S)
        await run.fire()
        run.emulators["north-clinic"].paused = True
        run.advance(1000)
        await run.fire()
        await run.sync()
        port = run.service.admin_port
        assert port
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{run.base}/status.json") as resp:
                assert resp.status == 404  # moved to the admin listener
            async with s.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                assert "od_bridge_subscription_lag_seconds" in await resp.text()

        config = tmp_path / "od-bridge.yaml"
        config.write_text("customers: [{name: main-office, customer_key: k}]\n")
        url = f"http://127.0.0.1:{port}/status.json"
        code = await asyncio.to_thread(main, ["status", "-c", str(config), "--url", url])
        out = capsys.readouterr().out.splitlines()
        assert code == 3  # not every office is green
        assert out[0].split()[:3] == ["OFFICE", "STATE", "SUBSCRIPTIONS"]
        rows = {line.split()[0]: line for line in out[1:3]}
        assert rows["main-office"].split()[1] == "OK"  # it kept polling
        assert rows["north-clinic"].split()[1] == "CRIT"
        assert "north-clinic: Appointment: silent" in "\n".join(out)

        run.emulators["north-clinic"].paused = False
        await run.fire()
        await run.sync()
        code = await asyncio.to_thread(main, ["status", "-c", str(config), "--url", url])
        out = capsys.readouterr().out.splitlines()
        assert code == 0, out
        assert {line.split()[1] for line in out[1:3]} == {"OK"}
        code = await asyncio.to_thread(main, ["status", "-c", str(config), "--url", url, "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 0 and [o["status"] for o in doc["offices"]] == ["green", "green"]

    # Daemon gone: one clear line, exit 1.
    code = await asyncio.to_thread(main, ["status", "-c", str(config), "--url", url])
    assert code == 1
    assert "is the daemon running?" in capsys.readouterr().err


def test_status_url_follows_the_configuration() -> None:
    def url(text: str) -> str:
        return status_url(parse(text + "\ncustomers: [{name: a, customer_key: k}]\n", env={}))

    assert url("listen: {host: 0.0.0.0, port: 8080}") == "http://127.0.0.1:8080/status.json"
    assert url("admin: {listen: '[::1]:9464'}") == "http://[::1]:9464/status.json"
    assert url("admin: {listen: '10.1.2.3:9464'}") == "http://10.1.2.3:9464/status.json"
