"""Load a YAML file into a pydantic model, with one clear error naming the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration or profile file is wrong; the message names the file and the key."""

    def __init__(self, path: Path | str, *problems: str) -> None:
        super().__init__(f"{path}: {'; '.join(problems)}")
        self.path = str(path)
        self.problems = problems


def key_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a dotted key path, list items as [i]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def problems(err: ValidationError) -> list[str]:
    """One line per problem: `key.path: what was expected`."""
    lines = []
    for e in err.errors(include_url=False):
        # Tagged unions put the tag name into the location; it is noise for a reader.
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check the spelling)"
        # A whole-document check names its own key path in the message.
        lines.append(msg if not loc else f"{key_path(loc)}: {msg}")
    return lines


def describe(err: ValidationError) -> str:
    return "; ".join(problems(err))


def read_yaml(path: Path | str) -> Any:
    """Parse a YAML file, turning I/O and syntax problems into `ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(p, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(p, f"not valid YAML{where}: {problem}") from exc


def validate(path: Path | str, data: Any, model: type[M]) -> M:
    """Validate parsed data against `model`, raising `ConfigError` with key paths."""
    if data is None:
        raise ConfigError(path, "file is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, *problems(exc)) from exc


def load_yaml_model(path: Path | str, model: type[M]) -> M:
    """Read and validate one YAML file."""
    return validate(path, read_yaml(path), model)
