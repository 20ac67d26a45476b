"""The failed-auth limiter, network matching and request ids (pure, with a fake clock)."""

from __future__ import annotations

import ipaddress

from bridge.access import AuthLimiter, allowed, client_bucket, request_id
from bridge.config import AuthFailureLimit


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    max_failures: int = 3, window_s: float = 60, max_clients: int = 100
) -> tuple[AuthLimiter, Clock]:
    clock = Clock()
    settings = AuthFailureLimit(
        max_failures=max_failures, window_s=window_s, max_clients=max_clients
    )
    return AuthLimiter(settings, clock), clock


def test_blocks_after_max_failures_until_the_window_ends() -> None:
    lim, clock = limiter()
    for _ in range(3):
        assert lim.retry_after("198.51.100.7") is None
        lim.failed("198.51.100.7")
    assert lim.retry_after("198.51.100.7") == 60
    clock.now += 45.5
    assert lim.retry_after("198.51.100.7") == 15  # rounded up, never 0
    assert lim.retry_after("198.51.100.8") is None  # per address
    clock.now += 15
    assert lim.retry_after("198.51.100.7") is None
    lim.failed("198.51.100.7")  # a new window starts with one failure
    assert lim.retry_after("198.51.100.7") is None


def test_failures_spread_over_windows_never_block() -> None:
    lim, clock = limiter()
    for _ in range(10):
        lim.failed("a")
        lim.failed("a")
        clock.now += 61
        assert lim.retry_after("a") is None


def test_an_address_that_authenticates_is_not_locked_out() -> None:
    # Behind NAT one workstation with an old key must not lock out the good ones.
    lim, clock = limiter()
    lim.succeeded("203.0.113.9")
    for _ in range(50):
        lim.failed("203.0.113.9")
    assert lim.retry_after("203.0.113.9") is None
    clock.now += 61  # trust lasts one window after the last success
    assert lim.retry_after("203.0.113.9") is None  # (its old failures are stale too)
    for _ in range(3):
        lim.failed("203.0.113.9")
    assert lim.retry_after("203.0.113.9") == 60


def test_a_success_forgets_earlier_failures() -> None:
    lim, _ = limiter()
    lim.failed("a")
    lim.failed("a")
    lim.succeeded("a")
    assert lim.retry_after("a") is None


def test_memory_is_bounded() -> None:
    lim, _ = limiter(max_clients=10)
    for i in range(1000):
        lim.failed(f"10.0.{i // 250}.{i % 250}")
        lim.succeeded(f"10.1.{i // 250}.{i % 250}")
    assert len(lim) <= 20


def test_failing_from_many_other_addresses_unblocks_nobody() -> None:
    # Measured before: one failure from each of max_clients + 1 other addresses pushed the
    # blocked one out of the table, and it could guess again at once.
    lim, clock = limiter(max_failures=3, max_clients=100)
    for _ in range(3):
        lim.failed("198.51.100.7")
    assert lim.retry_after("198.51.100.7") == 60
    for i in range(10_001):
        lim.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert lim.retry_after("198.51.100.7") == 60
    assert len(lim) <= 100
    clock.now += 60  # its window ends: the block with it
    assert lim.retry_after("198.51.100.7") is None


def test_a_table_full_of_blocks_keeps_them_all_and_counts_the_rest() -> None:
    lim, clock = limiter(max_failures=2, max_clients=10)
    blocked = [f"192.0.2.{i}" for i in range(10)]
    for client in blocked:
        lim.failed(client)
        lim.failed(client)
    lim.failed("203.0.113.1")
    lim.failed("203.0.113.1")  # no slot left: kept out rather than unblocking another
    assert all(lim.retry_after(c) == 60 for c in blocked)
    assert lim.retry_after("203.0.113.1") is None
    assert lim.untracked == 2  # both failures, each one counted as not held back
    assert len(lim) <= 10
    clock.now += 60
    lim.failed("203.0.113.1")
    lim.failed("203.0.113.1")  # the old blocks ended and made room
    assert lim.retry_after("203.0.113.1") == 60
    assert all(lim.retry_after(c) is None for c in blocked)


def test_ipv6_clients_are_counted_per_64() -> None:
    assert client_bucket("2001:db8:1:2::1") == client_bucket("2001:db8:1:2:ffff::9")
    assert client_bucket("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_bucket("2001:db8:1:3::1") != client_bucket("2001:db8:1:2::1")
    assert client_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_bucket("192.0.2.1") == "192.0.2.1"
    assert client_bucket(None) == "-"


def test_allowed_networks() -> None:
    nets = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
    assert allowed(nets, "192.0.2.77")
    assert allowed(nets, "::ffff:192.0.2.77")  # a dual-stack listener reports IPv4 like this
    assert allowed(nets, "2001:db8::5")
    assert not allowed(nets, "198.51.100.1")
    assert not allowed(nets, None)
    assert not allowed(nets, "not-an-ip")


def test_request_id_honours_a_safe_token_only() -> None:
    assert request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    for unsafe in ("", None, "a" * 65, "has space", '{"LName":"Doe"}', "-leading", "é"):
        rid = request_id(unsafe)
        assert rid != unsafe
        assert len(rid) == 32 and rid.isalnum()
    assert request_id(None) != request_id(None)
