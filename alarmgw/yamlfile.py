"""Load a YAML file into a pydantic model, with one clear error naming the key path.

Every file the gateway reads as YAML (the site file and the files it names: fault table,
profiles, engineers, API tokens, scenarios) goes through `read_yaml`, which bounds what a
wrong or hostile file can cost: its size, how deep it nests, how many nodes it has once
its aliases are expanded, how long an integer may be. Anything wrong is a `ConfigError`
naming the file and, where there is one, the line; never another exception.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import Resolver

M = TypeVar("M", bound=BaseModel)

# Limits for a file of the gateway's. A 5,000-device site file is about 0.5 MiB, 70,000
# nodes and 6 levels deep; these leave ample room above that and stop well before the
# file could cost seconds of start-up, hundreds of MB, or Python's recursion limit.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # collections inside collections; each level is two frames of the composer
MAX_NODES = 500_000  # scalars and collections, each alias counted as everything it stands for
MAX_INT_DIGITS = 64  # no setting needs more; Python refuses past 4,300 with a ValueError
MAX_PROBLEMS = 50  # lines of one error report
MAX_PROBLEM_CHARS = 400  # a message quoting a long value is cut here


class ConfigError(Exception):
    """A configuration or profile file is wrong; the message names the file and the key."""

    def __init__(self, path: Path | str, *problems: str) -> None:
        shown = [_clip(p) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
        super().__init__(f"{path}: {'; '.join(shown)}")
        self.path = str(path)
        self.problems = tuple(shown)


def _clip(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SUBKEY = re.compile(r"^[A-Za-z_]\w*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*: ")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def key_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a dotted key path, list items as [i]. A key that
    is not a plain name (spaces, control characters, very long) is quoted and cut short."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += ("." if out else "") + part
        else:
            out += f"[{_clip(part, 40)!r}]"
    return out or "(top level)"


def _brief(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems(err: ValidationError) -> list[str]:
    """One line per problem: `key.path: what was expected`."""
    lines = []
    for e in err.errors(include_url=False):
        # Tagged unions put the tag name into the location; it is noise for a reader.
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check the spelling)"
        elif e["type"] in ("literal_error", "enum") and isinstance(e.get("input"), str | int | float):
            msg = f"{msg}, not {_brief(e['input'])}"  # name what was given
        where = key_path(loc)
        if not loc:
            lines.append(msg)  # a whole-document check names its own key path in the message
        elif e["type"] == "value_error" and _SUBKEY.match(msg):
            lines.append(f"{where}.{msg}")  # a model's own check naming a key inside it
        else:
            lines.append(f"{where}: {msg}")
    return lines


def describe(err: ValidationError) -> str:
    return "; ".join(problems(err))


def read_text(path: Path | str, *, max_bytes: int = MAX_FILE_BYTES, what: str = "file") -> str:
    """A small UTF-8 text file, whole; `ConfigError` if it is not a readable regular file,
    is larger than `max_bytes` or is not UTF-8. Never blocks on a pipe or reads a device."""
    p = Path(path)
    try:
        with open(p, "rb", opener=_open_nonblocking) as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise ConfigError(p, f"{what} is a folder, not a file")
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(p, f"{what} is not a regular file (a device, pipe or socket)")
            raw = f.read(max_bytes + 1)
    except IsADirectoryError:
        raise ConfigError(p, f"{what} is a folder, not a file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(p, f"cannot read {what}: {reason}") from None
    if len(raw) > max_bytes:
        raise ConfigError(p, f"{what} is larger than {_size(max_bytes)}; this cannot be the right file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise ConfigError(
            p, f"{what} is not UTF-8 text: byte 0x{bad} at line {line}, column {column} (a binary or mis-saved file?)"
        ) from None


def _open_nonblocking(name: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def read_yaml(path: Path | str) -> Any:
    """Parse a YAML file, turning I/O, encoding, syntax and size problems into `ConfigError`."""
    p = Path(path)
    text = read_text(p)
    loader = None
    try:
        loader = BoundedLoader(text)  # the pure-Python reader checks characters here
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        pos = exc.position
        if _Parser.__module__ == "yaml._yaml":  # libyaml counts bytes of the UTF-8 text
            raw = text.encode()
            line = raw.count(b"\n", 0, pos) + 1
            column = len(raw[raw.rfind(b"\n", 0, pos) + 1 : pos].decode(errors="replace")) + 1
        else:  # PyYAML's own reader counts characters
            line = text.count("\n", 0, pos) + 1
            column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise ConfigError(
            p, f"not valid YAML at line {line}, column {column}: character U+{exc.character:04X} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        raise ConfigError(p, f"not valid YAML{where}: {context + ', ' if context else ''}{problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # A value PyYAML's constructors could not make (most are caught with their line in
        # BoundedLoader.construct_object; this is the net under it).
        raise ConfigError(p, f"not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def validate(path: Path | str, data: Any, model: type[M]) -> M:
    """Validate parsed data against `model`, raising `ConfigError` with key paths."""
    if data is None:
        raise ConfigError(path, "file is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, *problems(exc)) from exc
    except RecursionError:
        raise ConfigError(path, "too deeply nested") from None


def load_yaml_model(path: Path | str, model: type[M]) -> M:
    """Read and validate one YAML file."""
    return validate(path, read_yaml(path), model)


# --- the loader -------------------------------------------------------------------------

try:  # libyaml's parser: five times faster than PyYAML's own, and it bounds nesting itself
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _BoundedComposer(Composer):
    """PyYAML's composer (it is the recursive part) with a depth limit, a count of nodes as
    they would be after expanding aliases (a "billion laughs" file is a few hundred bytes),
    and no alias to a node that contains it."""

    peek_event: Callable[[], Any]  # the parser's

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[str, int] = {}  # anchor -> expanded size of its node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()
        anchor: str | None = event.anchor
        mark: Any = event.start_mark
        if isinstance(event, AliasEvent):
            if anchor is not None and anchor in self.anchors and anchor not in self._sizes:
                raise ComposerError(None, None, f"alias *{anchor} refers to a node that contains it", mark)
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(anchor or "", 1), event)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        start = self._expanded
        self._count(1, event)
        node = super().compose_node(parent, index)
        if node is not None:
            # Errors name where a value starts, never where it ends; one string for each tag,
            # key and short value however often it is written (`id`, `kind`, `smoke_detector`):
            # a site file of 20,000 devices is read in half the memory.
            node.end_mark = node.start_mark
            node.tag = sys.intern(node.tag)
            if isinstance(node, ScalarNode) and len(node.value) <= 64:
                node.value = sys.intern(node.value)
        self._depth -= 1
        if anchor is not None:
            self._sizes[anchor] = self._expanded - start
        return node

    def _count(self, n: int, event: Any) -> None:
        self._expanded += n
        if self._expanded > MAX_NODES:
            raise ComposerError(
                None, None, f"more than {MAX_NODES:,} values (aliases counted as what they repeat)", event.start_mark
            )


class _BoundedConstructor(SafeConstructor):
    """SafeConstructor whose value errors carry their line, with a bound on integer length
    and no duplicate keys (the last of two would silently win)."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            shown = _clip(str(node.value), 40) if isinstance(node, ScalarNode) else "this value"
            raise ConstructorError(None, None, f"cannot read {shown!r}: {exc}", node.start_mark) from None

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(
                None, None, f"an integer of {digits} digits (at most {MAX_INT_DIGITS})", node.start_mark
            )
        value: int = super().construct_yaml_int(node)
        return value

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found key {_clip(key_node.value, 40)!r} twice (first at line {seen[key].line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


_BoundedConstructor.add_constructor(  # type: ignore[type-var]  # the stubs bound it to the stock loaders
    "tag:yaml.org,2002:int", _BoundedConstructor.construct_yaml_int
)


class BoundedLoader(_Parser, _BoundedComposer, _BoundedConstructor, Resolver):
    """A safe loader (plain data only, no Python objects) with bounded cost."""

    # The parser is libyaml's; composing is ours (CParser has its own C composer, which
    # would bypass the bounds).
    check_node = Composer.check_node
    get_node = Composer.get_node
    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    compose_node = _BoundedComposer.compose_node
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _BoundedComposer.__init__(self)
        _BoundedConstructor.__init__(self)
        Resolver.__init__(self)
