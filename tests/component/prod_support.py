"""Helpers shared by the production-readiness tests: configs, samples, posting them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bridge import config_loader as configmod

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
TEST_KEY = "VzkmZEaUWOjnQX2z"  # Open Dental's public test customer key, as in the samples


def sample(name: str) -> dict[str, Any]:
    """One sample delivery: {"headers": {...}, "body": ...}."""
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def all_samples() -> dict[str, dict[str, Any]]:
    """Every sample delivery by file stem."""
    return {p.stem: sample(p.stem) for p in sorted(SAMPLES.glob("*.json"))}


def make_config(
    *, listen: dict[str, Any] | None = None, customer: dict[str, Any] | None = None
) -> configmod.Config:
    """A small valid configuration with one customer using the test key; overrides merge in."""
    raw: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0, **(listen or {})},
        "customers": [
            {"name": "main-office", "customer_key": TEST_KEY, "timezone": "America/Chicago"}
            | (customer or {})
        ],
        "spool": {"enabled": False},
    }
    return configmod.parse(yaml.safe_dump(raw), env={})


def body_bytes(delivery: dict[str, Any]) -> bytes:
    """The sample body as the sender would POST it."""
    return json.dumps(delivery["body"]).encode()
