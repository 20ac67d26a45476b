"""The status page in a real browser (Debian's headless Chromium via chromedriver and Selenium).

A running daemon syncs three emulated offices: one asleep (red), one whose Patient deliveries
start failing (amber), one healthy (green). Chromium loads /status; the rows and their colours
are read back from the rendered DOM, and a screenshot is kept in build/artifacts/.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.status_page import COLOURS
from tests.support import missing

from .offices import POLLING_S, OfficeSpec, Running, running

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,720",
)


def rgb(hex_colour: str) -> str:
    """`#d93025` as the browser reports a computed colour: `rgb(217, 48, 37)`."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven through Debian's chromedriver (required under CI=true)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        missing("chromium / chromium-driver not installed (apt-get install chromium-driver)")
    from selenium import webdriver  # noqa: PLC0415 - only where a browser exists
    from selenium.webdriver.chrome.service import Service as DriverService  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def load(driver: Any, url: str) -> dict[str, Any]:
    """Open `url` (off the event loop: the daemon answers on it) and read the rows back."""
    script = """
      const cell = (row, sel) => row.querySelector(sel);
      return {
        title: document.title,
        body: document.body.dataset.status,
        resources: performance.getEntriesByType('resource').map(e => e.name),
        rows: [...document.querySelectorAll('tr[data-office]')].map(row => ({
          office: row.dataset.office,
          status: row.dataset.status,
          stateText: cell(row, 'td.state').textContent,
          stateColour: getComputedStyle(cell(row, 'td.state')).backgroundColor,
          subs: [...row.querySelectorAll('li[data-sub]')].map(li => li.textContent),
          text: row.innerText,
        })),
      };
    """

    def go() -> dict[str, Any]:
        driver.get(url)
        result: dict[str, Any] = driver.execute_script(script)
        return result

    return await asyncio.to_thread(go)


async def scenario(run: Running) -> None:
    """Every office polls once; main-office falls asleep; south-clinic's Patient starts failing."""
    for emulator in run.emulators.values():
        emulator.change_rows("Appointment", 2)
        emulator.change_rows("Patient", 1)
    run.advance(POLLING_S)
    await run.fire()
    main = run.emulators["main-office"]
    async with aiohttp.ClientSession() as s:
        api = run.service.config.customers[0].api
        assert api is not None
        async with s.post(api.url.removesuffix("/api/v1") + "/emulator/office/pause") as resp:
            assert resp.status == 200
    assert main.paused
    run.advance(400)
    await run.fire()
    south = run.emulators["south-clinic"]
    patient = next(s for s in south.subs.items.values() if s["WatchTable"] == "Patient")
    patient["EndPointUrl"] = "http://127.0.0.1:9/unreachable/Patient"  # the office's route to us
    south.change_rows("Patient", 1)
    run.advance(POLLING_S)
    await run.fire()
    await run.sync()


async def test_status_page_rows_and_colours_in_chromium(prefix: str, browser: Any) -> None:
    specs = [
        OfficeSpec("main-office"),
        OfficeSpec("north-clinic", "America/New_York"),
        OfficeSpec("south-clinic", "America/Denver"),
    ]
    async with running(prefix, specs) as run:
        await scenario(run)
        page = await load(browser, f"{run.base}/status")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        assert await asyncio.to_thread(browser.save_screenshot, str(shot))
        assert shot.stat().st_size > 10_000

        assert page["resources"] == []  # self-contained: nothing else was fetched
        assert page["body"] == "red" and page["title"] == "od-bridge status: CRITICAL"
        rows = {r["office"]: r for r in page["rows"]}
        assert list(rows) == ["main-office", "north-clinic", "south-clinic"]
        expected = {"main-office": "red", "north-clinic": "green", "south-clinic": "amber"}
        for office, status in expected.items():
            assert rows[office]["status"] == status, rows[office]["text"]
            assert rows[office]["stateColour"] == rgb(COLOURS[status]), office
        assert rows["main-office"]["stateText"] == "CRITICAL"
        subs = rows["main-office"]["subs"]
        assert any("Appointment: lag 7.2 min" in s for s in subs), subs  # 430 s since its poll
        assert "silent" in rows["main-office"]["text"]
        assert any("failing" in s for s in rows["south-clinic"]["subs"]), rows["south-clinic"]
        assert "Appointment" in rows["north-clinic"]["text"]  # its last events are listed

        # The office wakes up: its next poll moves DateTimeStart, the next pass turns it green.
        run.emulators["main-office"].paused = False
        await run.fire()
        await run.sync()
        page = await load(browser, f"{run.base}/status")
        rows = {r["office"]: r for r in page["rows"]}
        assert rows["main-office"]["status"] == "green"
        assert rows["main-office"]["stateColour"] == rgb(COLOURS["green"])
