"""Independent JS oracles: the official @asyncapi/parser reads asyncapi.yaml; npm `uuid` our ids."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import all_samples, missing
from tests.unit.test_contract import messages_of

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("@asyncapi/parser@^3", "uuid@^11")

PARSE = """
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
const path = process.argv[2];
const { document, diagnostics } = await new Parser().parse(readFileSync(path, "utf8"), {
  source: path,
});
const text = (d) => `${d.code}: ${d.message} at ${d.path.join("/")}`;
console.log(JSON.stringify({
  errors: diagnostics.filter((d) => d.severity === 0).map(text),
  warnings: diagnostics.filter((d) => d.severity === 1).map(text),
  version: document ? document.version() : null,
  channels: document ? document.channels().length : 0,
  messages: document ? document.allMessages().length : 0,
  exchanges: document ? document.channels().all().map(
    (c) => c.bindings().get("amqp").value().exchange.name) : [],
}));
"""

UUIDS = """
import { readFileSync } from "node:fs";
import { validate, version } from "uuid";
const ids = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify(ids.map((id) => [id, validate(id), validate(id) ? version(id) : null])));
"""


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir with the JS packages installed by npm (nothing global, nothing in the repo)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("node and npm are not installed")
    where = tmp_path_factory.mktemp("npm")
    (where / "package.json").write_text('{"name": "contract-oracles", "private": true}')
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
            cwd=where,
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        missing(f"npm install failed: {stderr.decode(errors='replace')[-500:]}")
    (where / "parse.mjs").write_text(PARSE)
    (where / "uuids.mjs").write_text(UUIDS)
    return where


def node(where: Path, script: str, *args: str, stdin: bytes = b"") -> Any:
    done = subprocess.run(
        ["node", script, *args],
        check=False,
        cwd=where,
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return orjson.loads(done.stdout)


def test_asyncapi_parser_reads_the_document_without_errors(node_dir: Path) -> None:
    result = node(node_dir, "parse.mjs", str(ROOT / "asyncapi.yaml"))
    assert result["errors"] == []
    assert result["version"] == "3.0.0"
    # One channel and message per known type plus the db/ui fallbacks for unknown ones.
    assert result["channels"] == result["messages"] == 18
    assert "opendental.db.appointment" in result["exchanges"]
    assert "opendental.ui.patientselected" in result["exchanges"]


def test_asyncapi_parser_catches_a_broken_document(node_dir: Path, tmp_path: Path) -> None:
    """The oracle can fail: a message reference to nothing is an error."""
    text = (ROOT / "asyncapi.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("#/components/messages/patient", "#/components/messages/nope"))
    assert node(node_dir, "parse.mjs", str(broken))["errors"]


def test_every_sample_id_is_a_valid_uuid_for_npm_uuid(node_dir: Path) -> None:
    bodies = [body for name in all_samples() for body in messages_of(name)]
    ids = [body["id"] for body in bodies]
    checked = node(
        node_dir, "uuids.mjs", stdin=orjson.dumps([*ids, "ca95ea63-5447-6ff7-7dd4-a069cfb9fde4"])
    )
    *ours, old = checked
    assert old[1] is False  # the old form (arbitrary version bits) is rejected: the oracle bites
    for body, (event_id, valid, version) in zip(bodies, ours, strict=True):
        assert event_id == body["id"] and valid is True
        assert version == (4 if body["type"].startswith("com.opendental.ui.") else 8)
    assert len(ids) == 11  # ten samples, appointment.json with two rows
