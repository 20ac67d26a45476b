"""The exception tree of od-bridge; every error the bridge raises on purpose is a BridgeError.

Where a builtin exception means the same thing, the class inherits it too (in brackets), so
code that knows only the builtins (`except ValueError`, `except ConnectionError`) still works.

BridgeError
├── ConfigError            [ValueError] the configuration (or a command line naming what is not
│                          in it) is missing, unreadable or invalid (exit 2)
├── RequestError           a webhook we refuse; carries the HTTP status and a short reason
│   ├── BadRequest         [ValueError] 400: not UTF-8 JSON, or not an object / array of objects
│   ├── Unauthorized       401: missing or unknown customer key
│   ├── Forbidden          403: a valid key from outside the customer's allowed_networks
│   ├── RequestTimeout     408: the body did not arrive within listen.body_timeout_s
│   ├── PayloadTooLarge    [ValueError] 413: over listen.max_body_bytes or listen.max_rows
│   ├── ClientClosed       the client went away mid-body (counted, never answered)
│   ├── TooManyRequests    429: too many failed authentications from this address lately
│   └── Unavailable        503: neither the broker nor the spool can take the rows
├── PublishError           the broker did not confirm (nack, return, timeout, closed channel)
├── SpoolError             the local spool cannot take or give rows
│   └── SpoolFull          spool.max_events reached, or the disk is full
└── OpenDentalError        a call to the Open Dental API failed
    ├── OpenDentalAnswerError  it answered an error (or an unusable answer): status + message
    └── OpenDentalUnreachable  [ConnectionError] no answer at all (refused, timeouts), retries spent
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error od-bridge raises on purpose."""


class ConfigError(BridgeError, ValueError):
    """The configuration is invalid; `problems` lists `path: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class RequestError(BridgeError):
    """A webhook the receiver refuses, answered with `status` and a short reason."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadRequest(RequestError, ValueError):
    """400: the body is not UTF-8 JSON of the expected shape."""

    status = 400


class Unauthorized(RequestError):
    """401: missing or unknown customer key."""

    status = 401


class Forbidden(RequestError):
    """403: a valid key, sent from an address outside the customer's allowed_networks."""

    status = 403


class RequestTimeout(RequestError):
    """408: the body did not arrive in time (per chunk or in total)."""

    status = 408


class ClientClosed(RequestError):
    """The client closed the connection before its body arrived: its problem, not ours."""

    status = 499  # nginx's "client closed request"; nobody reads the answer


class TooManyRequests(RequestError):
    """429: this client address failed authentication too often; retry after `retry_after_s`."""

    status = 429

    def __init__(self, reason: str, retry_after_s: int = 60) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(RequestError, ValueError):
    """413: the body is larger than listen.max_body_bytes, or has too many rows or values."""

    status = 413


class Unavailable(RequestError):
    """503: neither the broker nor the spool can take the rows now."""

    status = 503

    def __init__(self, reason: str, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class PublishError(BridgeError):
    """The broker did not confirm a message (nack, return, timeout or closed channel)."""

    def __init__(
        self,
        reason: str,
        *,
        unconfirmed: tuple[int, ...] | None = None,
        returned: frozenset[int] = frozenset(),
        cause: str = "disconnected",
    ) -> None:
        super().__init__(reason)
        # Positions (in the list given to publish) of the rows not confirmed; None: all of
        # them. Rows not listed were confirmed and must not be sent again.
        self.unconfirmed = unconfirmed
        self.returned = returned  # of those, the ones RabbitMQ returned (no route), not failed
        self.cause = cause  # returned | nacked | timeout | disconnected

    def pending(self, count: int) -> tuple[int, ...]:
        """Positions of the unconfirmed rows among `count` given."""
        return tuple(range(count)) if self.unconfirmed is None else self.unconfirmed


class SpoolError(BridgeError):
    """The local spool cannot take or give rows."""


class SpoolFull(SpoolError):
    """The spool reached spool.max_events, or the disk is full."""


class OpenDentalError(BridgeError):
    """A call to the Open Dental API failed (see the two kinds below)."""


class OpenDentalAnswerError(OpenDentalError):
    """The Open Dental API answered an error (or an unusable answer): `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Open Dental answered {status}: {message}")
        self.status = status
        self.message = message


class OpenDentalUnreachable(OpenDentalError, ConnectionError):
    """The Open Dental API could not be reached (connection errors or timeouts, retries spent)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the Open Dental API at {url}: {reason}")
        self.url = url
        self.reason = reason
