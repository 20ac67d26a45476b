"""Logging setup: one JSON object per line on stderr (or text), never a body or a key."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# The id of the HTTP request being handled in this task (set by the receiver), so every line a
# request causes — in any module — can be tied together and to the caller's X-Request-Id.
request_id: ContextVar[str | None] = ContextVar("od_bridge_request_id", default=None)


@lru_cache(maxsize=1024)
def _short(filename: str) -> str:
    """A frame's file relative to its import root: `bridge/sync/plan.py`, `aiohttp/web.py`."""
    roots = [Path(p) for p in sys.path if p] + [Path(__file__).parents[1]]
    path = Path(filename)
    best = max(
        (r for r in roots if path.is_relative_to(r)), key=lambda r: len(r.parts), default=None
    )
    return path.relative_to(best).as_posix() if best is not None else path.name


def stack(tb: TracebackType | None) -> list[str]:
    """Where an exception passed, outermost first, as `file:line function`.

    Never its message nor any local variable: either may hold a request's rows (PHI). Source
    lines are not read either (`lookup_lines=False`).
    """
    frames = traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False)
    return [f"{_short(f.filename)}:{f.lineno} {f.name}" for f in frames]


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and what it was raised from or during, as `raise … from` links them."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return seen


def error_fields(exc: BaseException | None) -> dict[str, Any]:
    """`error` (the class), `stack` (frames) and, for a chained error, its `causes` likewise."""
    chain = _chain(exc)
    if not chain:
        return {}
    out: dict[str, Any] = {"error": type(chain[0]).__name__, "stack": stack(chain[0].__traceback__)}
    if len(chain) > 1:
        out["causes"] = [
            {"error": type(e).__name__, "stack": stack(e.__traceback__)} for e in chain[1:]
        ]
    return out


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
        if record.exc_info:
            out.update(error_fields(record.exc_info[1]))
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
        if record.exc_info:
            fields = error_fields(record.exc_info[1])
            if fields:
                line += f" error={fields['error']} stack={' > '.join(fields['stack'])}"
        return f"{line} {extra}".rstrip()


def _plain(value: Any) -> Any:
    """A log argument of another library as it may be logged: scalars and short text only."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, str) and len(value) <= 200:
        return value
    return f"<{type(value).__name__}>"


class LibraryArguments(logging.Filter):
    """Keeps request data out of other libraries' log lines.

    Their messages may format objects that hold a body (aiormq logs a returned message with
    `%r`); od-bridge's own lines pass only chosen fields. Arguments of other loggers that are
    not plain scalars or short text are replaced by their type's name.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments; never drop the line."""
        if record.args and not record.name.startswith("od_bridge"):
            if isinstance(record.args, Mapping):
                record.args = {key: _plain(value) for key, value in record.args.items()}
            else:
                record.args = tuple(_plain(value) for value in record.args)
        return True


def configure(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None) -> None:
    """Send every log line to stderr (or `stream`) in the chosen format; quiet chatty libraries."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(LibraryArguments())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiormq/aio-pika log frames and URLs at DEBUG; keep them at WARNING.
    for name in ("aiormq", "aio_pika", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
