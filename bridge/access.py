"""Who may post: failed-authentication rate limit per client address, allowed networks, ids."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeVar

from .config import AuthFailureLimit
from .config_customer import Customer
from .errors import Unauthorized

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_V = TypeVar("_V")
log = logging.getLogger("od_bridge.access")

# A request id we are willing to echo and log: short, and nothing that could carry a body.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# One IPv6 host usually owns a whole /64; counting per /64 stops an attacker from cycling
# through addresses of its own prefix to dodge the limit (and to flush the table).
_IPV6_BUCKET_PREFIX = 64


@lru_cache(maxsize=4096)  # per request, up to twice (offices, then the customer's networks)
def parse_address(peer: str | None) -> Address | None:
    """The peer's IP address (IPv4-mapped IPv6 as IPv4), or None when it is not an IP."""
    if not peer:
        return None
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def allowed(networks: Iterable[Network], peer: str | None) -> bool:
    """True when the peer address lies in one of the networks (a non-IP peer never does)."""
    address = parse_address(peer)
    if address is None:
        return False
    return any(address.version == net.version and address in net for net in networks)


@lru_cache(maxsize=4096)  # offices post from a handful of addresses: parse each once
def client_bucket(peer: str | None) -> str:
    """The rate-limit key of a peer: its IPv4 address, or its IPv6 /64."""
    address = parse_address(peer)
    if address is None:
        return peer or "-"
    if isinstance(address, ipaddress.IPv6Address):
        net = ipaddress.IPv6Network((address, _IPV6_BUCKET_PREFIX), strict=False)
        return str(net)
    return str(address)


def request_id(incoming: str | None) -> str:
    """The caller's X-Request-Id when it is a short safe token, else a fresh random one."""
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()


class AuthLimiter:
    """Counts failed authentications per client in a fixed window; memory capped at max_clients.

    A client that authenticated correctly within the last window is never blocked: behind NAT
    one misconfigured workstation must not lock out the office's good ones. A blocked client
    gets 429 without its key being compared, so it cannot keep guessing at full speed.

    The memory bound is never an unblock: a block is kept until its window ends. Clients still
    counting share what the blocks leave of `max_clients` and are forgotten least recently
    seen first, so failing once from many other addresses frees no blocked one.
    """

    def __init__(
        self, settings: AuthFailureLimit, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = settings.max_failures
        self.window_s = settings.window_s
        self.max_clients = settings.max_clients
        self._clock = clock
        # client → [window start, failures] below max_failures; oldest-touched first (LRU).
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        # client → when its block ends; in the order blocked, so about the order they end.
        self._blocked: OrderedDict[str, float] = OrderedDict()
        # client → monotonic time until which it counts as known-good.
        self._good: OrderedDict[str, float] = OrderedDict()
        self.untracked = 0  # failures not counted: every slot held by a live block
        self._full = False

    def __len__(self) -> int:
        return len(self._failures) + len(self._blocked) + len(self._good)

    def retry_after(self, client: str) -> int | None:
        """Seconds this client must wait before its key is looked at again, or None."""
        now = self._clock()
        good_until = self._good.get(client)
        if good_until is not None:
            if good_until > now:
                return None
            del self._good[client]
        until = self._blocked.get(client)
        if until is None:
            return None
        if until <= now:
            del self._blocked[client]
            return None
        return max(1, math.ceil(until - now))

    def failed(self, client: str) -> None:
        """Record one failed authentication from this client."""
        now = self._clock()
        if client in self._blocked:
            return  # blocked clients are refused before their key is compared
        entry = self._failures.get(client)
        if entry is None or now - entry[0] >= self.window_s:
            entry = self._failures[client] = [now, 0]
        entry[1] += 1
        self._failures.move_to_end(client)
        if entry[1] >= self.max_failures:
            del self._failures[client]
            if len(self._blocked) >= self.max_clients:
                self._expire_blocks(now)
            if len(self._blocked) < self.max_clients:
                self._blocked[client] = entry[0] + self.window_s
        self._trim_failures(now)
        if client in self._failures or client in self._blocked:
            self._full = False
            return
        # Every slot holds a live block (max_clients * max_failures failures within one
        # window): keep them all rather than free one; this client is not held back.
        self.untracked += 1
        if not self._full:  # one line per episode, not one per failure
            self._full = True
            log.warning(
                "failed-authentication limiter full of blocked addresses; new ones are"
                " not held back until a block ends",
                extra={"blocked": len(self._blocked)},
            )

    def _expire_blocks(self, now: float) -> None:
        """Forget the blocks that have ended, from the oldest: O(1) per block, once."""
        while self._blocked and next(iter(self._blocked.values())) <= now:
            self._blocked.popitem(last=False)

    def _trim_failures(self, now: float) -> None:
        """Keep counting clients within what the blocks leave of the cap (LRU first)."""
        room = self.max_clients - len(self._blocked)
        if len(self._failures) > room and self._blocked:
            self._expire_blocks(now)
            room = self.max_clients - len(self._blocked)
        _trim(self._failures, room)

    def succeeded(self, client: str) -> None:
        """Record a correct authentication: forget its failures and trust it for a window."""
        self._failures.pop(client, None)
        self._good[client] = self._clock() + self.window_s
        self._good.move_to_end(client)
        _trim(self._good, self.max_clients)


def _trim(table: OrderedDict[str, _V], cap: int) -> None:
    """Forget the least recently touched clients beyond the cap (bounded memory)."""
    while len(table) > cap:
        table.popitem(last=False)


class Keys:
    """Customer lookup by key: a digest index, then a constant-time comparison."""

    def __init__(self, customers: tuple[Customer, ...]) -> None:
        self._index: dict[bytes, tuple[bytes, Customer]] = {}
        for customer in customers:
            for key in customer.keys:
                raw = key.encode()
                self._index[hashlib.sha256(raw).digest()] = (raw, customer)

    def find(self, presented: str | None) -> Customer:
        """The customer owning this Authorization value, or Unauthorized."""
        if not presented:
            raise Unauthorized("missing Authorization header (the customer API key)")
        raw = presented.strip().encode("utf-8", "replace")
        # The dict lookup sees only a digest of the key; the final check is constant-time.
        found = self._index.get(hashlib.sha256(raw).digest())
        if found is None or not hmac.compare_digest(found[0], raw):
            raise Unauthorized("unknown customer key")
        return found[1]
