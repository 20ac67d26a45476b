"""The emulator's Subscriptions API over real HTTP: fields, defaults, validation, auth, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from bridge.emulator.api import FAILURE_FIELDS, FIELDS
from bridge.emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY, Emulator, Settings

NOW = datetime(2026, 11, 28, 9, 0, 0)
AUTH = {"Authorization": f"ODFHIR {DOC_DEVELOPER_KEY}/{DOC_CUSTOMER_KEY}"}
OTHER = "OtherOfficeKey01"
DB = {"EndPointUrl": "http://127.0.0.1:8080/apievents/Appointment", "WatchTable": "Appointment",
      "PollingSeconds": 30, "Workstation": "OD-SERVER"}  # fmt: skip
UI = {
    "EndPointUrl": "http://127.0.0.1:8080/apievents/PatientSelected",
    "UiEventType": "PatientSelected",
}


class Api:
    """A tiny raw HTTP caller, so these tests see exactly what the emulator answers."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session

    async def call(
        self,
        method: str,
        path: str = "",
        body: Any = None,
        auth: dict[str, str] | None = None,
        **params: Any,
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        async with self.session.request(
            method,
            f"{self.base}/subscriptions{path}",
            json=body,
            headers=auth or AUTH,
            params=params or None,
        ) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None, resp.headers


async def start(settings: Settings) -> AsyncIterator[Api]:
    emulator = Emulator(settings, clock=lambda: NOW)
    async with emulator.serve() as base, aiohttp.ClientSession() as session:
        yield Api(base, session)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for a in start(Settings(customer_keys=(DOC_CUSTOMER_KEY, OTHER), page_size=3)):
        yield a


async def test_post_database_subscription_defaults_and_key_order(api: Api) -> None:
    status, body, headers = await api.call("POST", body=DB)
    assert status == 201
    assert list(body) == [*FIELDS, *FAILURE_FIELDS]
    assert body == {
        "SubscriptionNum": 1, "EndPointUrl": DB["EndPointUrl"], "Workstation": "OD-SERVER",
        "CustomerKey": DOC_CUSTOMER_KEY, "WatchTable": "Appointment", "PollingSeconds": 30,
        "UiEventType": "", "DateTimeStart": "2026-11-28 09:00:00",
        "DateTimeStop": "0001-01-01 00:00:00", "Note": "",
        "FailureReason": "", "SubsequentFailures": 0,
        "DateTimeLastFailure": "0001-01-01 00:00:00", "DateTimeNextRetry": "0001-01-01 00:00:00",
    }  # fmt: skip
    assert headers["Location"].endswith("/api/v1/subscriptions/1")


async def test_post_ui_subscription_has_zero_polling_and_no_table(api: Api) -> None:
    status, body, _ = await api.call("POST", body=UI | {"DateTimeStart": "2026-12-01"})
    assert status == 201
    assert (body["WatchTable"], body["PollingSeconds"], body["UiEventType"]) == (
        "",
        0,
        "PatientSelected",
    )
    assert body["DateTimeStart"] == "2026-12-01 00:00:00"  # date-only accepted


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"WatchTable": "Appointment", "PollingSeconds": 5}, "EndPointUrl is required."),
        ({"EndPointUrl": "http://x/y"}, "WatchTable or UiEventType is required."),
        (DB | UI, "A subscription is either a WatchTable or a UiEventType, not both."),
        (DB | {"WatchTable": "Nonsense"}, "WatchTable 'Nonsense' is not supported."),
        (UI | {"UiEventType": "PatientOpened"}, "UiEventType 'PatientOpened' is not supported."),
        ({k: v for k, v in DB.items() if k != "PollingSeconds"}, "PollingSeconds is required."),
        (
            UI | {"PollingSeconds": 30},
            "PollingSeconds is only allowed for WatchTable subscriptions.",
        ),
        (
            DB | {"EndPointUrl": "http://x/" + "a" * 300},
            "EndPointUrl must be 255 characters or less.",
        ),
        (DB | {"DateTimeStop": "tomorrow"}, "DateTimeStop is not a valid date/time"),
    ],
)
async def test_post_validation_answers_400_with_a_bare_json_string(
    api: Api, body: dict[str, Any], message: str
) -> None:
    status, answer, _ = await api.call("POST", body=body)
    assert (status, answer) == (400, message)


async def test_newer_tables_are_accepted(api: Api) -> None:
    for name in ("AppointmentDeleted", "LabCase", "ToothInitialDeleted"):
        status, _, _ = await api.call("POST", body=DB | {"WatchTable": name})
        assert status == 201


async def test_duplicate_post_is_rejected_until_the_first_expires(api: Api) -> None:
    assert (await api.call("POST", body=DB))[0] == 201
    assert (await api.call("POST", body=DB))[:2] == (
        400,
        "An identical subscription already exists.",
    )
    assert (await api.call("POST", body=DB | {"Workstation": "FRONTDESK1"}))[0] == 201
    assert (await api.call("PUT", "/1", body={"DateTimeStop": "2026-11-28 08:00:00"}))[0] == 200
    assert (await api.call("POST", body=DB))[0] == 201


async def test_put_changes_given_fields_only_and_rejects_frozen_ones(api: Api) -> None:
    await api.call("POST", body=DB | {"Note": "keep me"})
    status, body, _ = await api.call("PUT", "/1", body={"PollingSeconds": 60})
    assert status == 200
    assert (body["PollingSeconds"], body["Note"], body["Workstation"]) == (
        60,
        "keep me",
        "OD-SERVER",
    )
    for frozen in ("WatchTable", "UiEventType", "CustomerKey"):
        assert (await api.call("PUT", "/1", body={frozen: "Patient"}))[:2] == (
            400, f"{frozen} cannot be updated.",
        )  # fmt: skip
    await api.call("POST", body=UI)
    assert (await api.call("PUT", "/2", body={"PollingSeconds": 5}))[:2] == (
        400, "PollingSeconds is only allowed for WatchTable subscriptions.",
    )  # fmt: skip


async def test_unknown_or_foreign_subscription_is_404(api: Api) -> None:
    await api.call("POST", body=DB)
    other = {"Authorization": f"ODFHIR {DOC_DEVELOPER_KEY}/{OTHER}"}
    for method in ("PUT", "DELETE"):
        assert (await api.call(method, "/99", body={}))[:2] == (404, "Subscription not found.")
        assert (await api.call(method, "/1", body={}, auth=other))[0] == 404
    assert (await api.call("GET", auth=other))[1] == []  # each key sees its own only
    assert (await api.call("DELETE", "/1"))[0] == 200
    assert (await api.call("GET"))[1] == []


@pytest.mark.parametrize(
    "header",
    [f"ODFHIR {DOC_DEVELOPER_KEY}/wrong", f"ODFHIR wrong/{DOC_CUSTOMER_KEY}", DOC_CUSTOMER_KEY, ""],
)
async def test_bad_odfhir_keys_are_401(api: Api, header: str) -> None:
    assert (await api.call("GET", auth={"Authorization": header}))[:2] == (
        401,
        "Invalid Authorization header.",
    )


async def test_list_pages_with_limit_and_offset(api: Api) -> None:
    for n in range(5):
        await api.call("POST", body=DB | {"Workstation": f"WS{n}"})
    first = (await api.call("GET"))[1]
    assert [s["SubscriptionNum"] for s in first] == [1, 2, 3]  # page_size 3
    assert [s["SubscriptionNum"] for s in (await api.call("GET", Offset=3))[1]] == [4, 5]
    assert [s["SubscriptionNum"] for s in (await api.call("GET", Limit=2, Offset=1))[1]] == [2, 3]


async def test_throttle_answers_429_with_retry_after() -> None:
    async for api in start(Settings(throttle_s=30)):
        assert (await api.call("GET"))[0] == 200
        status, body, headers = await api.call("GET")
        assert (status, body) == (429, "Too many requests.")
        assert 1 <= int(headers["Retry-After"]) <= 30


async def test_free_tier_delete_is_401() -> None:
    async for api in start(Settings(allow_delete=False)):
        await api.call("POST", body=DB)
        status, body, _ = await api.call("DELETE", "/1")
        assert status == 401 and "DELETE" in body


async def test_offices_before_the_failure_fields_list_without_them() -> None:
    for settings in (Settings(failure_fields=False), Settings(legacy=True)):
        async for api in start(settings):
            status, body, _ = await api.call("POST", body=DB)
            assert status == 201
            assert list(body) == list(FIELDS)
