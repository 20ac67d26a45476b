"""The receiver's sockets and TLS context, built before anything starts so they fail first."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

from .config import Tls
from .errors import BridgeError


def tls_context(tls: Tls | None) -> ssl.SSLContext | None:
    """The server-side TLS context of `listen.tls` (None: plain HTTP)."""
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except OSError as exc:  # ssl.SSLError is one too
        # Plain words rather than "[Errno 2] …" or "[SSL] PEM lib (_ssl.c:3926)".
        if isinstance(exc, ssl.SSLError):
            known = exc.reason and exc.reason.lower().replace("_", " ")  # KEY_VALUES_MISMATCH
            reason = known or "not a PEM certificate chain and its key"
        else:
            reason = exc.strerror or str(exc)
        raise BridgeError(
            f"listen.tls: cannot load certificate or key ({reason}: {tls.cert}, {tls.key})"
        ) from exc
    return context


def cannot_listen(host: str, port: int, exc: OSError, setting: str = "") -> str:
    """One sentence for a failed bind, without asyncio's wrapper text around the reason."""
    if isinstance(exc, socket.gaierror) or not exc.errno:  # its errno is no OS error number
        reason = exc.strerror or str(exc)
    else:
        reason = os.strerror(exc.errno)
    return f"{setting}{': ' if setting else ''}cannot listen on {host}:{port}: {reason}"


async def bind(host: str, port: int, setting: str = "") -> list[socket.socket]:
    """Sockets bound to every address of `host` (not listening yet: nothing is served early).

    `setting` names the configuration key in the error when it is not the main listener.

    Binding here, rather than in aiohttp's TCPSite, lets a busy port fail the start before the
    spool or the broker connection exist; `web.SockSite` serves the sockets at the end.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BridgeError(cannot_listen(host, port, exc, setting)) from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if os.name == "posix":  # as asyncio does: a restart must not wait out TIME_WAIT
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" and "0.0.0.0" both bound: one each
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise BridgeError(cannot_listen(host, port, exc, setting)) from exc
    return sockets
