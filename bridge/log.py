"""Logging setup: one JSON object per line on stderr (or text), never a body or a key."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# The id of the HTTP request being handled in this task (set by the receiver), so every line a
# request causes — in any module — can be tied together and to the caller's X-Request-Id.
request_id: ContextVar[str | None] = ContextVar("od_bridge_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """Formats a record as a short human line with its `extra=` fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one text line."""
        extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        rid = request_id.get()
        if rid is not None:
            extra = f"request_id={rid} {extra}"
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" error={record.exc_info[0].__name__}"
        return f"{line} {extra}".rstrip()


def configure(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None) -> None:
    """Send every log line to stderr (or `stream`) in the chosen format; quiet chatty libraries."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiormq/aio-pika log frames and URLs at DEBUG; keep them at WARNING.
    for name in ("aiormq", "aio_pika", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
