"""The emulated office's event POSTs: one HTTP session, Open Dental's headers, failures recorded."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from ..opendental import DATETIME_FORMAT, NEVER

log = logging.getLogger("od_bridge.emulator")


class Sender:
    """POSTs events to subscription endpoints as Open Dental does (one session, reused)."""

    def __init__(self, post_timeout_s: float, legacy: bool) -> None:
        self.post_timeout_s = post_timeout_s
        self.legacy = legacy  # before 22.4.35: no Event-Type / Workstation headers
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: Any, headers: dict[str, str]) -> int:
        """POST `body` as JSON; the answer's status, or 0 when none came (refused, timed out)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.post_timeout_s)
        try:
            async with self._session.post(
                url, data=orjson.dumps(body), headers=headers, timeout=timeout
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("event POST failed", extra={"error": type(exc).__name__})
            return 0  # no answer: as much a failure as a 503

    def headers(
        self, sub: dict[str, Any], kind: str, name: str, workstation: str
    ) -> dict[str, str]:
        """The headers of one event POST (no Event-Type / Workstation on a legacy office)."""
        headers = {
            "Authorization": sub["CustomerKey"],
            "Content-Type": "application/json; charset=utf-8",
        }
        if not self.legacy:
            headers["Event-Type"] = f"{kind}: {name}"
            headers["Workstation"] = workstation
        return headers

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def record_failure(sub: dict[str, Any], status: int, now: datetime, retry: datetime | None) -> None:
    """Record a failed delivery in the subscription's failure fields (where it has them)."""
    if "FailureReason" not in sub:
        return
    # What .NET's HttpWebRequest would say (our guess at the text Open Dental stores).
    reason = (
        f"The remote server returned an error: ({status})."
        if status
        else "Unable to connect to the remote server"
    )
    sub["FailureReason"] = reason
    sub["SubsequentFailures"] += 1
    sub["DateTimeLastFailure"] = now.strftime(DATETIME_FORMAT)
    sub["DateTimeNextRetry"] = retry.strftime(DATETIME_FORMAT) if retry else NEVER
