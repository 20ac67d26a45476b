"""Open Dental REST client: ODFHIR auth, pacing per customer key, retries, paging, timeouts."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ..config_customer import Customer
from ..errors import ConfigError, OpenDentalAnswerError, OpenDentalUnreachable
from .pacing import Pacer, Sleep, retry_after

log = logging.getLogger("od_bridge.odapi")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_MESSAGE = 300
_UNREACHABLE_ATTEMPTS = 3  # no answer at all rarely heals within seconds: fail sooner

# What one office may make us hold. An office has tens of subscriptions; these stop an API
# that pages forever or answers without end long before memory is at risk.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # one answer
MAX_LIST_PAGES = 100  # pages of one listing
MAX_LIST_ITEMS = 10_000  # subscriptions of one listing
MAX_LIST_BYTES = 32 * 1024 * 1024  # all pages of one listing


class _Retryable(Exception):
    """A failure worth another try: an answer's `status` (None: no answer), the server's hint."""

    def __init__(
        self, status: int | None, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def message_of(text: str) -> str:
    """Open Dental's error sentence from a body that is plain text or a JSON string/object."""
    text = text.strip()
    try:
        parsed = orjson.loads(text) if text else ""
    except orjson.JSONDecodeError:
        parsed = text
    if isinstance(parsed, dict):
        parsed = next(
            (parsed[k] for k in ("message", "Message", "error", "detail") if k in parsed), text
        )
    out = str(parsed).strip() or "(no message)"
    return out if len(out) <= _MAX_MESSAGE else out[: _MAX_MESSAGE - 1] + "…"


class OpenDentalClient:
    """Async client for one office's Open Dental API (Remote, Local API or API Service)."""

    def __init__(
        self,
        base_url: str,
        developer_key: str,
        customer_key: str,
        *,
        min_interval_s: float = 0.0,
        timeout_s: float = 70.0,
        page_size: int = 100,
        max_attempts: int = 6,
        max_backoff_s: float = 30.0,
        pacer: Pacer | None = None,
        sleep: Sleep = asyncio.sleep,
        other_keys: tuple[str, ...] = (),
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = f"ODFHIR {developer_key}/{customer_key}"
        # Every key this client could echo back through Open Dental's text (an API that
        # repeats the Authorization header in its error): masked before any text leaves here.
        self._secrets = tuple(k for k in (developer_key, customer_key, *other_keys) if k.strip())
        self.max_response_bytes = max_response_bytes
        self.bytes_read = 0  # answer bytes read so far (the listing's byte cap)
        self.timeout_s = timeout_s
        self.page_size = page_size
        self.max_attempts = max_attempts
        self.max_backoff_s = max_backoff_s
        self.pacer = pacer or Pacer(min_interval_s, sleep=sleep)
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_customer(cls, customer: Customer, **overrides: Any) -> OpenDentalClient:
        """A client for `customer.api` (pacing and page size follow Remote vs local defaults)."""
        if customer.api is None:
            raise ConfigError([f"customers: {customer.name}: no api: section to sync with"])
        api = customer.api
        kwargs: dict[str, Any] = {
            "min_interval_s": api.pacing_s,
            "timeout_s": api.timeout_s,
            "page_size": 1000 if api.is_local else 100,
        }
        kwargs.update(overrides)
        kwargs.setdefault("other_keys", customer.keys[1:])
        return cls(api.url, api.developer_key.get_secret_value(), customer.keys[0], **kwargs)

    def mask(self, text: str) -> str:
        """`text` with every key of this client replaced by `***`."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"OpenDentalClient({self.base_url!r})"  # never the keys

    async def __aenter__(self) -> OpenDentalClient:
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after_s if isinstance(exc, _Retryable) else None
        backoff = wait_random_exponential(multiplier=0.5, max=self.max_backoff_s)(state)
        # Honour the server's Retry-After, plus a little jitter so replicas don't stampede.
        return min(self.max_backoff_s, hint + backoff / 10) if hint is not None else backoff

    def _stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        unreachable = isinstance(exc, _Retryable) and exc.status is None
        limit = min(self.max_attempts, _UNREACHABLE_ATTEMPTS) if unreachable else self.max_attempts
        return bool(stop_after_attempt(limit)(state))

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, int] | None = None
    ) -> Any:
        """One API call with pacing and retries; the parsed JSON answer (None when empty)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            stop=self._stop,
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, path, body, params)
        except _Retryable as exc:
            if exc.status is None:
                raise OpenDentalUnreachable(self.base_url, exc.message) from exc
            raise OpenDentalAnswerError(exc.status, exc.message) from exc
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True always raises

    async def _once(self, method: str, path: str, body: Any, params: dict[str, int] | None) -> Any:
        await self.pacer.wait()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        data = orjson.dumps(body) if body is not None else None
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                data=data,
                headers=headers,
                params=params,
                timeout=timeout,
            ) as resp:
                status = resp.status
                text = (await self._read(resp)).decode("utf-8", errors="replace")
                hint = retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Each try at info: the caller reports the final failure once, with its reason.
            log.info(
                "open dental call failed",
                extra={"method": method, "path": path, "error": type(exc).__name__},
            )
            raise _Retryable(None, self.mask(f"{type(exc).__name__} {exc}".strip())) from exc
        if status in _RETRY_STATUSES:
            log.info(
                "open dental asked to retry",
                extra={"method": method, "path": path, "status": status},
            )
            raise _Retryable(status, message_of(self.mask(text)), hint)
        if status >= 300:
            raise OpenDentalAnswerError(status, message_of(self.mask(text)))
        try:
            return orjson.loads(text) if text.strip() else None
        except orjson.JSONDecodeError as exc:
            raise OpenDentalAnswerError(status, "answer is not JSON") from exc

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The answer's body, refused as soon as it is larger than max_response_bytes."""
        limit = self.max_response_bytes
        too_big = OpenDentalAnswerError(resp.status, f"answer larger than {limit} bytes")
        if resp.content_length is not None and resp.content_length > limit:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        self.bytes_read += size
        return b"".join(chunks)

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription of this customer key, following Limit/Offset pages.

        At most MAX_LIST_PAGES pages, MAX_LIST_ITEMS subscriptions and MAX_LIST_BYTES:
        beyond, OpenDentalAnswerError says which cap the API passed.
        """
        found: dict[Any, dict[str, Any]] = {}
        offset = 0
        start = self.bytes_read
        for _ in range(MAX_LIST_PAGES):
            if self.bytes_read - start > MAX_LIST_BYTES:
                break
            params = {"Offset": offset} if offset else None
            page = await self.request("GET", "/subscriptions", params=params)
            if not isinstance(page, list):
                raise OpenDentalAnswerError(200, "GET /subscriptions did not answer a list")
            fresh = [
                s for s in page if isinstance(s, dict) and s.get("SubscriptionNum") not in found
            ]
            for sub in fresh:
                found[sub.get("SubscriptionNum")] = sub
            if len(found) > MAX_LIST_ITEMS:
                break
            # Paging is undocumented here: ask for more only after a full page of new items,
            # so a server that ignores Offset can't loop us forever.
            if len(page) < self.page_size or not fresh:
                return list(found.values())
            offset += len(page)
        raise OpenDentalAnswerError(
            200,
            f"GET /subscriptions kept paging: stopped after {len(found)} subscriptions, "
            f"{self.bytes_read - start} bytes (caps: {MAX_LIST_PAGES} pages, "
            f"{MAX_LIST_ITEMS} subscriptions, {MAX_LIST_BYTES} bytes)",
        )

    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a subscription; the created object."""
        out = await self.request("POST", "/subscriptions", body)
        return out if isinstance(out, dict) else {}

    async def update_subscription(self, num: int, body: dict[str, Any]) -> None:
        """PUT the given fields of subscription `num` (omitted fields stay)."""
        await self.request("PUT", f"/subscriptions/{num}", body)

    async def delete_subscription(self, num: int) -> None:
        """DELETE subscription `num`."""
        await self.request("DELETE", f"/subscriptions/{num}")
