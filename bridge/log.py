"""Logging setup: one JSON object per line on stderr (or text), never a body or a key."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


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
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" error={record.exc_info[0].__name__}"
        return f"{line} {extra}".rstrip()


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log line to stderr in the chosen format; quiet chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiormq/aio-pika log frames and URLs at DEBUG; keep them at WARNING.
    for name in ("aiormq", "aio_pika", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
