"""The event contract: schemas generated from od_tables, checked in, and true of real rows."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bridge import asyncapi, cli, contract, normalize, opendental
from bridge.emulator.office import Office, make_row
from bridge.od_tables import NUMERIC_STRINGS, SHAPES
from tests.support import all_samples, sample

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "bridge" / "schemas"
CHICAGO = ZoneInfo("America/Chicago")
# Every WatchTable in ../shared/opendental.md (documented and newer) and the one UI event type.
OPENDENTAL_MD_TYPES = {
    "Appointment", "AppointmentDeleted", "Patient", "PatField", "Operatory", "Provider",
    "Schedule", "ToothInitial", "LabCase", "LabCaseDeleted", "MedicationPat",
    "MedicationPatDeleted", "PatFieldDeleted", "ScheduleDeleted", "ToothInitialDeleted",
    "PatientSelected",
}  # fmt: skip


def messages_of(name: str, normalized: bool = True) -> list[dict[str, Any]]:
    """The published bodies of one sample, through the receiver's resolution and normalize."""
    delivery = sample(name)
    headers, body = delivery["headers"], delivery["body"]
    table = opendental.resolve(headers.get("Event-Type"), (), body)
    ctx = normalize.Context("main-office", CHICAGO, normalize=normalized)
    rows = body if isinstance(body, list) else [body]
    out = normalize.messages(ctx, table, headers.get("Workstation"), rows, 0.0, prefix="od")
    return [orjson.loads(m.body) for m in out]


def shipped_validator(dataschema: str) -> Draft202012Validator:
    path = dataschema.split("/schemas/", 1)[1]
    schema = orjson.loads(contract.shipped(path))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def payload_validator(doc: dict[str, Any], message: str) -> Draft202012Validator:
    """A validator of one AsyncAPI message's payload, its $refs resolved within the document."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    ref = {"$ref": f"urn:asyncapi#/components/messages/{message}/payload"}
    return Draft202012Validator(
        ref, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def test_every_type_has_a_shape_and_a_schema() -> None:
    known = {t.name for t in opendental.KNOWN_TABLES}
    assert known == OPENDENTAL_MD_TYPES == set(SHAPES)
    deliveries = [sample(n) for n in all_samples()]
    sampled = {
        opendental.resolve(d["headers"].get("Event-Type"), (), d["body"]).name for d in deliveries
    }
    assert sampled <= known
    for delivery in deliveries:  # every field of every sample is described by its type
        t = opendental.resolve(delivery["headers"].get("Event-Type"), (), delivery["body"])
        assert t.shape is not None
        rows = delivery["body"] if isinstance(delivery["body"], list) else [delivery["body"]]
        assert all(set(row) <= {c.name for c in t.shape.columns} for row in rows), t.name
    for t in opendental.KNOWN_TABLES:
        assert (SCHEMAS / contract.schema_path(t)).is_file()
        assert (SCHEMAS / contract.schema_path(t, normalized=False)).is_file()


@pytest.mark.parametrize("t", opendental.KNOWN_TABLES, ids=lambda t: t.name)
def test_shapes_agree_with_the_tables(t: opendental.Table) -> None:
    assert t.shape is not None
    names = [c.name for c in t.shape.columns]
    assert len(names) == len(set(names))
    assert t.primary_key in names
    required = {c.name for c in t.shape.columns if c.required}
    assert t.primary_key in required
    if t.kind == "db" and not t.deletes and t.name not in ("LabCase", "MedicationPat"):
        assert t.change_columns[0] in required  # documented change column: always sent
    if t.deletes:
        assert opendental.table("db", t.deletes).primary_key == t.primary_key


def test_checked_in_schemas_are_a_fresh_generation() -> None:
    generated = contract.all_schemas()
    on_disk = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*.json")}
    assert on_disk == set(generated), "run `od-bridge schema json`"
    for path, schema in generated.items():
        assert (SCHEMAS / path).read_bytes() == contract.render(schema), path
        assert contract.shipped(path) == contract.render(schema)  # importlib.resources
        Draft202012Validator.check_schema(schema)


def test_checked_in_asyncapi_is_a_fresh_generation() -> None:
    text = (ROOT / "asyncapi.yaml").read_text(encoding="utf-8")
    assert text == asyncapi.render(), "run `od-bridge schema asyncapi -o asyncapi.yaml`"
    assert yaml.safe_load(text) == asyncapi.document()


@pytest.mark.parametrize("normalized", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("name", all_samples())
def test_every_sample_message_matches_its_schemas(name: str, normalized: bool) -> None:
    doc = asyncapi.document()
    for body in messages_of(name, normalized):
        table = opendental.table(body["type"].split(".")[2], body["type"].split(".")[3])
        expected = contract.dataschema("http://127.0.0.1:8080/schemas", table, normalized)
        assert body["dataschema"] == expected
        shipped_validator(body["dataschema"]).validate(body["data"])
        if normalized:  # the AsyncAPI document describes the default, normalized messages
            payload_validator(doc, contract.schema_name(table)).validate(body)


def test_a_wrong_value_fails_validation() -> None:
    """The schemas constrain: a type error, a missing key or a bad id is caught."""
    [body, _] = messages_of("appointment")
    doc = asyncapi.document()
    data_schema = shipped_validator(body["dataschema"])
    assert not list(data_schema.iter_errors(body["data"]))
    assert list(data_schema.iter_errors({**body["data"], "IsHygiene": "false"}))
    assert list(data_schema.iter_errors({**body["data"], "AptDateTime": "2026-12-02 08:30:00"}))
    assert list(data_schema.iter_errors({k: v for k, v in body["data"].items() if k != "AptNum"}))
    assert not list(data_schema.iter_errors({**body["data"], "NewInV27": 1}))  # extras allowed
    payload = payload_validator(doc, "appointment")
    assert list(payload.iter_errors({**body, "id": "ca95ea63-5447-6ff7-7dd4-a069cfb9fde4"}))
    assert list(payload.iter_errors({**body, "odclinic": 3.5}))
    assert list(payload.iter_errors({**body, "odclinic": 2**31}))
    assert list(payload.iter_errors({**body, "type": "com.opendental.db.Patient"}))


@pytest.mark.parametrize("t", opendental.KNOWN_TABLES, ids=lambda t: t.name)
def test_emulator_rows_of_every_type_match_their_schema(t: opendental.Table) -> None:
    """The emulator's invented rows (LabCase, MedicationPat and *Deleted included) validate."""
    ctx = normalize.Context("main-office", CHICAGO)
    if t.kind == "ui":
        row = Office().patient(5)  # what the emulator sends for PatientSelected
    else:
        row = make_row(t.name, 5, "2026-11-28 08:00:00", random.Random(1))
    [event] = normalize.events(ctx, t, "OD-SERVER", [row], datetime(2026, 11, 28).timestamp())
    shipped_validator(event.dataschema).validate(event.data)


def test_unknown_types_point_at_the_generic_schema() -> None:
    ctx = normalize.Context("c", CHICAGO)
    [event] = normalize.events(ctx, opendental.table("db", "Commlog"), None, [{"CommlogNum": 1}], 0)
    assert event.dataschema.endswith("/schemas/v1/unknown.json")
    shipped_validator(event.dataschema).validate(event.data)


def test_every_sample_id_is_a_valid_uuid_for_python() -> None:
    """Database ids are UUIDv8, UI ids UUIDv4, both of RFC 9562's variant, in canonical text."""
    for name in all_samples():
        for body in messages_of(name):
            parsed = uuid.UUID(body["id"])
            assert str(parsed) == body["id"]
            assert parsed.variant == uuid.RFC_4122
            assert parsed.version == (4 if body["type"].startswith("com.opendental.ui.") else 8)


def consumer_table() -> str:
    """README's per-type table, rendered from opendental.py and od_tables.py."""
    lives = {t.deletes: t for t in opendental.KNOWN_TABLES if t.deletes}
    ordered = sorted(opendental.KNOWN_TABLES, key=lambda t: (t.kind, t.deletes or t.name, t.name))
    lines = []
    for t in ordered:
        assert t.shape is not None
        change = " / ".join(f"`{c}`" for c in t.change_columns) or "— (`time` = received)"
        if t.deletes:
            deletions = f"deletes the `{t.deletes}` row with this `{t.primary_key}`"
        elif t.name in lives:
            deletions = f"`{lives[t.name].name}`, by `{t.primary_key}`"
        else:
            deletions = "—"
        numbers = [f"`{c.name}`" for c in t.shape.columns if c.kind in NUMERIC_STRINGS]
        path = contract.schema_path(t)
        cells = [f"`{t.name}`", f"`{t.primary_key}`", change, deletions]
        cells += [", ".join(numbers) or "—", f"[{path}](bridge/schemas/{path})"]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def test_readme_per_type_table_is_the_source() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert consumer_table() in readme, "README's per-type table: paste consumer_table()"


def test_a_text_that_reads_like_a_boolean_or_no_date_still_validates() -> None:
    """normalize converts by value: the schemas say so, so validation never parks such a row."""
    ctx = normalize.Context("main-office", CHICAGO)
    row = {**sample("appointment")["body"][0], "Note": "true", "ProcDescript": "0001-01-01 x"}
    table = opendental.table("db", "Appointment")
    [event] = normalize.events(ctx, table, None, [row], 0.0)
    assert event.data["Note"] is True and event.data["ProcDescript"] is None
    shipped_validator(event.dataschema).validate(event.data)


def test_the_cli_generates_what_is_checked_in(tmp_path: Path) -> None:
    assert cli.main(["schema", "json", "-o", str(tmp_path / "schemas")]) == 0
    written = {p.relative_to(tmp_path / "schemas").as_posix() for p in tmp_path.rglob("*.json")}
    assert written == set(contract.PATHS)
    for path in written:
        assert (tmp_path / "schemas" / path).read_bytes() == (SCHEMAS / path).read_bytes()
    assert cli.main(["schema", "asyncapi", "-o", str(tmp_path / "asyncapi.yaml")]) == 0
    assert (tmp_path / "asyncapi.yaml").read_bytes() == (ROOT / "asyncapi.yaml").read_bytes()
