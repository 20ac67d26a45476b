"""PURE: a webhook body as rows: UTF-8 JSON, an object or an array of objects, within caps.

The caps are checked before the body is turned into Python objects: a 16 MB body of tiny
values (`[{},{},…]`) parses into ~5 M objects and ~500 MB, so the count comes first, from a
streaming parse that keeps nothing and stops at the first value over a cap.
"""

from __future__ import annotations

from typing import Any

import ijson
import orjson

from .errors import BadRequest, PayloadTooLarge

# JSON values (scalars, objects, arrays) one body may hold: Open Dental sends at most 1,000
# rows of ~100 fields; 1 M values parse into well under 200 MB.
MAX_VALUES = 1_000_000

_BOMS_NOT_UTF8 = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
_OPEN = frozenset({"start_map", "start_array"})
_CLOSE = frozenset({"end_map", "end_array"})


def _count(body: bytes, max_rows: int, max_values: int) -> None:
    """Walk the JSON without building it; raise PayloadTooLarge at the first cap passed."""
    depth = rows = values = 0
    try:
        for event, _ in ijson.basic_parse(body, use_float=True):
            if event in _OPEN:
                depth += 1
                values += 1
                if depth == 2 and event == "start_map":
                    rows += 1
                    if rows > max_rows:
                        raise PayloadTooLarge(
                            f"body has more than {max_rows} rows (listen.max_rows)"
                        )
            elif event in _CLOSE:
                depth -= 1
            elif event != "map_key":
                values += 1
            if values > max_values:
                raise PayloadTooLarge(f"body has more than {max_values} JSON values")
    except ijson.JSONError:
        raise BadRequest("body is not valid UTF-8 JSON") from None


def parse(
    body: bytes, max_rows: int, max_values: int = MAX_VALUES
) -> list[dict[str, Any]] | dict[str, Any]:
    """UTF-8 JSON (BOM allowed) that is an object or an array of at most `max_rows` objects.

    BadRequest for anything else; PayloadTooLarge over `max_rows` rows or `max_values` values.
    """
    if body.startswith(_UTF8_BOM):
        body = body[3:]
    elif body.startswith(_BOMS_NOT_UTF8):
        raise BadRequest("body must be UTF-8 JSON")
    # Upper bounds in C speed: every row opens with '{', and every value is a container or
    # followed by a comma (or is the last one). Within both, the exact count is not needed.
    containers = body.count(b"{")
    if containers > max_rows or containers + body.count(b"[") + body.count(b",") >= max_values:
        _count(body, max_rows, max_values)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid UTF-8 JSON") from None
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, list) and all(type(row) is dict for row in doc):
        return doc
    raise BadRequest("body must be a JSON object or an array of objects")
