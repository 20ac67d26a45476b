"""README.md cannot drift: its config reference, example event and consumer are checked."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from bridge import normalize, opendental
from bridge.config import Config
from bridge.config_loader import expand
from bridge.events import encode

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "config.example.yaml"
REFERENCE_HEADING = "## Configuration reference"

# A reference row: `| `dotted.path` | type | default | meaning |`.
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|([^|]*)\|")
# A commented-out key in the example file, e.g. `  # tls:` or `      #   note: …` or `# - a: 1`.
_COMMENTED_KEY = re.compile(r"^(\s*)# ?(\s*(?:- )?[a-z_]+:(?:\s.*)?)$")


def _models(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models inside a field's type, and whether they sit in a list (tuple[Model, ...])."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            yield arg, origin is tuple


def model_paths(model: type[BaseModel] = Config, base: str = "") -> dict[str, Any]:
    """Every dotted key path of the model (lists as `[]`), mapped to its pydantic FieldInfo."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        path = f"{base}{name}"
        out[path] = info
        for sub, in_list in _models(info.annotation):
            out |= model_paths(sub, f"{path}[]." if in_list else f"{path}.")
    return out


def _opaque(paths: Mapping[str, Any]) -> set[str]:
    """Fields whose keys are user data (Mapping fields, e.g. customers[].fields)."""
    return {p for p, info in paths.items() if typing.get_origin(info.annotation) is Mapping}


def readme_rows() -> dict[str, tuple[str, str]]:
    """The reference table of the README: path → (type cell, default cell)."""
    text = README.read_text(encoding="utf-8")
    assert REFERENCE_HEADING in text, f"README.md has no '{REFERENCE_HEADING}' section"
    section = text.split(REFERENCE_HEADING, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line.strip())
        if match:
            path = match.group(1)
            assert path not in rows, f"README lists `{path}` twice"
            rows[path] = (match.group(2).strip(), match.group(3).strip())
    return rows


def example_text(uncomment: bool) -> str:
    """config.example.yaml, with its commented-out keys turned into keys when asked."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    if uncomment:
        lines = [_COMMENTED_KEY.sub(r"\1\2", line) for line in lines]
    return "\n".join(lines) + "\n"


def yaml_paths(node: Any, base: str = "", opaque: frozenset[str] = frozenset()) -> set[str]:
    """Every dotted key path in a parsed YAML tree (lists as `[]`, opaque mappings not entered)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{base}{key}"
            out.add(path)
            if path not in opaque:
                out |= yaml_paths(value, f"{path}.", opaque)
    elif isinstance(node, list):
        for item in node:
            out |= yaml_paths(item, base.removesuffix(".") + "[].", opaque)
    return out


def _plain(value: Any) -> Any:
    """A model default as YAML would write it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


PATHS = model_paths()


def test_readme_lists_exactly_the_models_keys() -> None:
    rows = readme_rows()
    missing = sorted(set(PATHS) - set(rows))
    unknown = sorted(set(rows) - set(PATHS))
    assert not missing, f"keys of bridge/config.py missing from the README reference: {missing}"
    assert not unknown, f"README reference lists keys the model does not have: {unknown}"


@pytest.mark.parametrize("path", sorted(PATHS))
def test_readme_default_matches_the_model(path: str) -> None:
    info = PATHS[path]
    type_cell, default_cell = readme_rows()[path]
    assert type_cell, f"`{path}`: the type column is empty"
    if info.is_required():
        assert "required" in default_cell.lower(), f"`{path}` is required; say so"
        return
    default = info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return  # a section: its keys are checked one by one
    assert default is not PydanticUndefined
    token = re.search(r"`([^`]*)`", default_cell)
    assert token, f"`{path}`: the default column must give the default in backticks"
    written = yaml.safe_load(token.group(1)) if token.group(1) else ""
    expected = _plain(default)
    if isinstance(expected, float) and isinstance(written, int):
        written = float(written)
    assert written == expected, f"`{path}`: README says {written!r}, the model {expected!r}"


def test_example_has_every_key_as_a_key_or_a_commented_out_key() -> None:
    opaque = frozenset(_opaque(PATHS))
    found = yaml_paths(yaml.safe_load(example_text(uncomment=True)), opaque=opaque)
    missing = sorted(set(PATHS) - found)
    unknown = sorted(found - set(PATHS))
    assert not missing, f"keys missing from config.example.yaml (add, commented out): {missing}"
    assert not unknown, f"config.example.yaml has keys the model does not have: {unknown}"


@pytest.mark.parametrize("uncomment", [False, True], ids=["as-is", "commented-keys-enabled"])
def test_example_is_valid_with_and_without_its_commented_out_keys(uncomment: bool) -> None:
    raw = expand(yaml.safe_load(example_text(uncomment)), {}, "", [])
    Config.model_validate(raw)


def test_readme_starts_with_make_run_and_make_test() -> None:
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:40])
    assert "make run" in head
    assert "make test" in head


def test_readme_consumer_is_the_tested_example() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Writing a consumer", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    example = (ROOT / "examples" / "consumer.py").read_text(encoding="utf-8")
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert lines
    stray = [line for line in lines if line not in example.splitlines()]
    assert not stray, f"README consumer lines not in examples/consumer.py: {stray}"


def test_readme_cloudevent_is_what_the_bridge_encodes() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### The CloudEvent (body)", 1)[1]
    shown = orjson.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    delivery = orjson.loads((ROOT / "tests/fixtures/samples/appointment.json").read_bytes())
    headers = delivery["headers"]
    ctx = normalize.Context(customer="main-office", zone=ZoneInfo("America/Chicago"))
    table = opendental.resolve(headers["Event-Type"], (), delivery["body"])
    [first, _] = normalize.events(ctx, table, headers["Workstation"], delivery["body"], 0.0)
    message = encode(first, "opendental")
    assert orjson.loads(message.body) == shown
    assert list(shown) == list(orjson.loads(message.body))
    assert (message.exchange, message.routing_key) == (
        "opendental.db.appointment",
        "main-office.0.OD-SERVER",
    )
    assert "`main-office.0.OD-SERVER`" in section.split("```json", 1)[0]


def readme_module_map() -> dict[str, str]:
    """The README's module map (Development section): 'sync/client.py' style path → its line."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Development", 1)[1]
    block = section.split("```\nbridge/", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    package = ""
    for line in block.splitlines()[1:]:
        match = re.match(r"^( +)(\S+)\s*(.*)$", line)
        if not match:  # a line past the bridge/ tree (examples/, deploy/) ends the map
            break
        indent, name, meaning = len(match.group(1)), match.group(2), match.group(3)
        if indent == 2 and name.endswith("/"):
            package = name
        elif indent == 2 or (indent == 4 and package):
            path = name if indent == 2 else package + name
            assert name.endswith(".py"), f"README module map: {name!r} is not a module"
            assert path not in entries, f"README module map lists {path} twice"
            assert meaning.strip(), f"README module map: {path} has no description"
            entries[path] = meaning
    return entries


def test_readme_module_map_lists_every_module() -> None:
    """Every module under bridge/ has its line in the README's map, and every line a module."""
    package = ROOT / "bridge"
    modules = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    listed = set(readme_module_map())
    assert not modules - listed, f"README module map misses {sorted(modules - listed)}"
    assert not listed - modules, f"README module map: no such module {sorted(listed - modules)}"
