"""PURE: event ids: deterministic UUIDv8 per row and change (row_id), random UUIDv4 otherwise."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from .opendental import Table


def _format_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_id() -> str:
    """str(uuid.uuid4()) without the UUID object: random, version 4, RFC 4122 variant."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return _format_uuid(bytes(raw))


# The variant digit of a UUIDv8 for each hex digit of the hash: its two high bits become 0b10.
_VARIANT = {f"{n:x}": f"{8 | (n & 3):x}" for n in range(16)}


def hash_id(material: bytes) -> str:
    """RFC 9562 UUIDv8 of a hash: 122 bits of BLAKE2b, version 8, variant 0b10."""
    # = str(uuid.UUID(bytes=digest)) with octet 6's high nibble set to 8 and octet 8's two
    # high bits to 10, done on the hex text (cheaper than on bytes and then formatting).
    h = hashlib.blake2b(material, digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def row_id(customer: str, table: Table, row: dict[str, Any]) -> str:
    """Deterministic id: same customer, table, key and change value (or same row) → same id."""
    key = row.get(table.primary_key) if table.primary_key else None
    change = next((row[c] for c in table.change_columns if row.get(c)), None)
    if key is not None and change is not None:
        material = f"{customer}\x1f{table.name}\x1f{key}\x1f{change}".encode()
    else:
        canonical = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        material = f"{customer}\x1f{table.name}\x1f".encode() + canonical
    return hash_id(material)
