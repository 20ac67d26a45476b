"""`od-bridge status`: the running daemon's /status.json as a table in the terminal."""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

import orjson

from . import status
from .config import Config
from .errors import BridgeError

_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def status_url(config: Config) -> str:
    """Where the daemon of this configuration serves /status.json (admin listener first)."""
    address = config.admin.address
    scheme = "http"
    if address is None:
        address = (config.listen.host, config.listen.port)
        scheme = "https" if config.listen.tls is not None else "http"
    host, port = address
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/status.json"


def fetch(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """GET the status document; BridgeError with the reason when that fails."""
    context = None
    if url.startswith("https:"):
        # The daemon's certificate names its public host, not the address asked here; the
        # document holds nothing secret and nothing is sent, so the name is not checked.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as resp:  # noqa: S310
            doc: dict[str, Any] = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise BridgeError(f"{url} answered {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BridgeError(f"cannot read {url} ({reason}); is the daemon running?") from exc
    except orjson.JSONDecodeError as exc:
        raise BridgeError(f"{url} did not answer a status document") from exc
    return doc


def run(config: Config, url: str | None, as_json: bool) -> int:
    """Print the table (or the JSON); exit 0 when every office is green, 3 when not."""
    doc = fetch(url or status_url(config))
    if as_json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        print(status.table(doc, colour=sys.stdout.isatty()))
    return 0 if doc.get("status") == "green" else 3
