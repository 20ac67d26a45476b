"""Reading a webhook request: its body within the size and time limits, header values as text."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from .errors import BadRequest, ClientClosed, PayloadTooLarge, RequestTimeout


def header_text(value: str | None) -> str | None:
    """A header's value as text that can be encoded, or None when absent or empty.

    aiohttp decodes header bytes as UTF-8 and keeps bytes that are not (a Windows machine name
    in its code page) as lone surrogates, which no encoder accepts; such a value is read as
    ISO-8859-1 instead, HTTP's historical charset, in which every byte is a character.
    """
    if not value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode(errors="surrogateescape").decode("latin-1")
    return value


def _payload_reason(exc: RequestPayloadError) -> str:
    """aiohttp's reason without its status prefix (`400, message: Can not decode …`)."""
    cause = exc.__cause__
    message = getattr(cause, "message", None) or str(exc)
    return " ".join(str(message).split())[:120]


async def read_body(
    request: web.Request, limit: int, chunk_timeout_s: float, body_timeout_s: float
) -> bytes:
    """The body, refusing it as soon as it grows past the limit (no unbounded buffering).

    Each chunk must arrive within chunk_timeout_s and the whole body within body_timeout_s
    (listen.body_chunk_timeout_s, listen.body_timeout_s), so a slow upload holds its
    concurrency slot for a bounded time.
    """
    chunks: list[bytes] = []
    size = 0
    content = request.content
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body_timeout_s
    try:
        while True:
            if content.is_eof():  # the rest is here already: no wait, so no timer
                chunk = await content.readany()
            else:
                wait = min(chunk_timeout_s, deadline - loop.time())
                async with asyncio.timeout(max(wait, 0)):
                    chunk = await content.readany()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
            chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout("the body did not arrive in time") from None
    except RequestPayloadError as exc:
        if request.transport is None or request.transport.is_closing():
            raise ClientClosed("the client closed the connection mid-body") from None
        # A body that does not decode as its Content-Encoding says, or broken chunking.
        raise BadRequest(f"body could not be read ({_payload_reason(exc)})") from None
    except ConnectionError:
        raise ClientClosed("the client closed the connection mid-body") from None
