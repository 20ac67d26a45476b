"""Carry out a Plan against the Open Dental Subscriptions API, action by action."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..errors import OpenDentalAnswerError, OpenDentalError
from ..opendental import DATETIME_FORMAT
from .plan import Action, Plan, find_twin


class SubscriptionApi(Protocol):
    """What apply needs from the Open Dental client."""

    async def list_subscriptions(self) -> list[dict[str, Any]]: ...
    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def update_subscription(self, num: int, body: dict[str, Any]) -> None: ...
    async def delete_subscription(self, num: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one action: ok, a note for the operator, or Open Dental's error."""

    action: Action
    ok: bool
    detail: str = ""
    num: int | None = None


async def _create(action: Action, client: SubscriptionApi) -> Outcome:
    try:
        made = await client.create_subscription(dict(action.body))
    except OpenDentalAnswerError as exc:
        if exc.status != 400:
            raise
        # A retried POST whose first answer was lost is rejected as a duplicate: look again.
        twin = find_twin(await client.list_subscriptions(), action.body)
        if twin is not None:
            return Outcome(action, True, "already there", twin.get("SubscriptionNum"))
        raise
    return Outcome(action, True, "", made.get("SubscriptionNum"))


async def _delete(action: Action, client: SubscriptionApi, stop: str) -> Outcome:
    assert action.num is not None
    try:
        await client.delete_subscription(action.num)
    except OpenDentalAnswerError as exc:
        if exc.status == 404:
            return Outcome(action, True, "already gone", action.num)
        if exc.status != 401:
            raise
        # The free permission tier has no DELETE: retire it instead so it stops firing.
        await client.update_subscription(action.num, {"DateTimeStop": stop})
        why = f"DELETE not permitted (401); retired with DateTimeStop {stop}"
        return Outcome(action, True, why, action.num)
    return Outcome(action, True, "", action.num)


async def apply(
    plan_: Plan,
    client: SubscriptionApi,
    *,
    now: Callable[[], datetime] = datetime.now,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Carry out the pending actions in order; a 400/404 fails that action only, 401 stops all."""
    outcomes: list[Outcome] = []
    for action in plan_.pending:
        stop = False
        try:
            if action.op == "create":
                outcome = await _create(action, client)
            elif action.op == "update":
                await client.update_subscription(action.num or 0, dict(action.body))
                outcome = Outcome(action, True, "", action.num)
            else:
                outcome = await _delete(action, client, now().strftime(DATETIME_FORMAT))
        except OpenDentalError as exc:
            outcome = Outcome(action, False, str(exc), action.num)
            # Bad keys or no answer at all: the rest would fail too. 400/404 concern this one.
            refused_one = isinstance(exc, OpenDentalAnswerError) and exc.status in (400, 404)
            stop = not refused_one
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
        if stop:
            break
    return outcomes
