"""PURE: AMQP routing keys from the configured template (shared by config checks and normalize)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_ROUTING_UNSAFE = str.maketrans({".": "_", "*": "_", "#": "_"})

# A routing key is an AMQP short string (≤ 255 bytes). The clinic and workstation come from
# requests, so each is cut to this many bytes; config.py checks that the template with its
# customers' names and values this long still fits, so every request's key can be published.
ROUTING_VALUE_BYTES = 64


def _routing_value(text: str) -> str:
    safe = text.translate(_ROUTING_UNSAFE)
    raw = safe.encode()
    if len(raw) <= ROUTING_VALUE_BYTES:
        return safe
    return raw[:ROUTING_VALUE_BYTES].decode(errors="ignore")  # never half a character


def routing_key(template: str, customer: str, clinic: Any, workstation: str | None) -> str:
    """Fill the template; '.', '*' and '#' inside a value become '_'; long values are cut.

    No clinic (None: absent, or not a number) is `0`, as documented.
    """
    if clinic is None:
        clinic = 0
    elif type(clinic) is not int:
        clinic = str(clinic)  # config checks pass text; hashable and bounded either way
    return _routing_key(template, customer, clinic, workstation)


@lru_cache(maxsize=1024)
def _routing_key(template: str, customer: str, clinic: int | str, workstation: str | None) -> str:
    return template.format(
        customer=customer.translate(_ROUTING_UNSAFE),
        clinic=_routing_value(str(clinic)) or "0",
        workstation=_routing_value(workstation or "_"),
    )
