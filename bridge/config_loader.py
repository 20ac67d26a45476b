"""Read the YAML file: ${VAR} expansion, validation into Config, every problem as `path: reason`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import config_names
from .config import Config
from .errors import ConfigError

# `${VAR}` / `${VAR:-default}`; `$${VAR}` is the escape for a literal `${VAR}`.
_ENV_REF = re.compile(r"(\$?)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last one silently, so the first setting would quietly not apply)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may repeat keys
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key '{key}' (first on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith(("function-", "tagged-")):
            out += f".{part}" if out else part
    return out or "(top level)"


def expand(
    node: Any, env: Mapping[str, str], where: str = "", problems: list[str] | None = None
) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of the parsed YAML tree."""
    problems = [] if problems is None else problems
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            escaped, name, default = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]  # `$${VAR}` → the literal `${VAR}`
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{where or '(top level)'}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(sub, node)
    if isinstance(node, dict):
        return {
            k: expand(v, env, f"{where}.{k}" if where else str(k), problems)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [expand(v, env, f"{where}[{i}]", problems) for i, v in enumerate(node)]
    return node


def parse(text: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate YAML text; raise ConfigError listing every problem as `path: reason`."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise ConfigError(
            [f"{at}: not valid YAML ({getattr(exc, 'problem', 'syntax error')})"]
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping of settings"])
    problems: list[str] = []
    raw = expand(raw, os.environ if env is None else env, "", problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        # A place whose variable is missing already has its problem; skip the echo of it.
        missing = {p.split(": ", 1)[0] for p in problems}
        for err in exc.errors(include_input=False, include_url=False):
            where = _path(tuple(err["loc"]))
            if not any(m == where or m.startswith((f"{where}.", f"{where}[")) for m in missing):
                problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(problems) from None
    problems += config_names.problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return parse(text, env)
