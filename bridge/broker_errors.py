"""PURE: why a connection to RabbitMQ failed, in words an operator can act on, never a password."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from aio_pika.exceptions import InvalidFrameError, ProbableAuthenticationError


def safe_url(url: str) -> str:
    """The broker URL without its password: `amqp://user@host:5672/vhost`."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path or '/'}"


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def reason(exc: BaseException, url: str) -> str:
    """The underlying reason of a failed connect (refused, ACCESS_REFUSED, vhost, DNS, …)."""
    parts = urlsplit(url)
    user = parts.username or "guest"
    if isinstance(exc, ProbableAuthenticationError):
        text = f"ACCESS_REFUSED: the broker refused the login of user '{user}' (user or password)"
    elif isinstance(exc, InvalidFrameError) and "Connection.Close" in str(exc):
        # RabbitMQ closes at Connection.Open when the vhost is missing or not the user's; aiormq
        # keeps only the frame's name, so say what it means.
        text = (
            f"vhost '{_vhost(url)}' not found, or user '{user}' has no access to it "
            "(the broker closed the connection at Connection.Open)"
        )
    elif isinstance(exc, TimeoutError):
        text = "no answer from the broker in time"
    elif isinstance(exc.__cause__, OSError):
        text = str(exc.__cause__)  # "[Errno 111] Connect call failed ('127.0.0.1', 5999)"
    else:
        detail = " ".join(str(exc).split())
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    password = parts.password
    if password:
        text = text.replace(password, "***")
    return text[:300]
