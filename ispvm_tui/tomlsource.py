"""Load TOML and point validation problems at the line they come from.

tomllib gives values without positions, so a light line scanner records
where each table, array-of-tables element and key was written. A pydantic
error location such as ``("devices", 2, "role")`` is then mapped to the
closest line that was written, and every problem reads
``FILE:LINE: devices[2].role: message``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import tomli as tomllib  # the standard library's parser, compiled: ~3x faster on a 100k-device file
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound="BaseModel")

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*=""")
_INLINE_ELEMENT = re.compile(r"^\s*\{")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"  # a warning is reported but does not refuse the file

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        message = f"warning: {self.message}" if self.severity == "warning" else self.message
        return f"{where}: {self.field}: {message}" if self.field else f"{where}: {message}"


class SourceError(Exception):
    """One or more problems in a TOML source; str() lists them one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


_BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")

# A config file is read whole, parsed by tomllib (pure Python) and validated: bound it so a
# mistaken path (a log, a dump, /dev/zero) fails at once instead of eating memory for minutes.
MAX_FILE_BYTES = 64 * 1024 * 1024


def _split_dotted(key: str) -> list[str]:
    if _BARE_KEY.match(key):  # the common case, without the regex below
        return [key]
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', key)
    return [p.strip("\"'") for p in parts]


class LineMap:
    """Where each path was written in a TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Loc, int] = {}
        self._scan(text)

    def _scan(self, text: str) -> None:
        counters: dict[tuple[str, ...], int] = {}
        table: Loc = ()
        array_key: Loc | None = None  # inside a multi-line array value
        array_index = 0
        depth = 0
        in_multiline_string: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if in_multiline_string:
                if line.count(in_multiline_string) % 2 == 1:
                    in_multiline_string = None
                continue
            if not line or line[0] == "#":
                continue
            if depth > 0 and array_key is not None:
                # an element of a multi-line array: one index per inline table / value line
                if _INLINE_ELEMENT.match(line) and depth == 1:
                    self.lines.setdefault((*array_key, array_index), number)
                    self._inline_keys((*array_key, array_index), line, number)
                    array_index += 1
                depth += _bracket_delta(line)
                if depth <= 0:
                    array_key, depth = None, 0
                continue
            header = _HEADER.match(line) if line[0] == "[" else None
            if header:
                parts = tuple(_split_dotted(header.group(2)))
                if header.group(1) == "[[":
                    idx = counters.get(parts, 0)
                    counters[parts] = idx + 1
                    table = (*self._resolve(parts, counters), idx)
                else:
                    table = tuple(self._resolve(parts, counters))
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path: Loc = (*table, *_split_dotted(key.group(1)))
            self.lines.setdefault(path, number)
            value = line[key.end():].strip()
            if value[:3] in ('"""', "'''") and value.count(value[:3]) == 1:
                in_multiline_string = value[:3]
            if value[:1] == "{":
                self._inline_keys(path, value, number)
            delta = _bracket_delta(value)
            if value.startswith("[") and delta > 0:
                array_key, array_index, depth = path, 0, delta
                rest = value[1:].strip()
                if _INLINE_ELEMENT.match(rest):
                    self.lines.setdefault((*path, 0), number)
                    self._inline_keys((*path, 0), rest, number)
                    array_index = 1

    def _resolve(self, parts: tuple[str, ...], counters: dict[tuple[str, ...], int]) -> list[str | int]:
        """[[a]] then [a.b] means a[last].b: insert the current index of each array prefix."""
        out: list[str | int] = []
        for i, part in enumerate(parts):
            out.append(part)
            prefix = parts[: i + 1]
            if i < len(parts) - 1 and prefix in counters:
                out.append(counters[prefix] - 1)
        return out

    def _inline_keys(self, base: Loc, text: str, number: int) -> None:
        for match in re.finditer(r"([A-Za-z0-9_\-\"'.]+)\s*=", text):
            self.lines.setdefault((*base, *_split_dotted(match.group(1))), number)

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def _bracket_delta(text: str) -> int:
    if "[" not in text and "]" not in text:
        return 0  # most values: no regex needed
    # Ignore brackets inside strings; good enough for configuration files.
    stripped = re.sub(r'"(?:\\.|[^"\\])*"|\'[^\']*\'', "", text)
    stripped = re.sub(r"#.*$", "", stripped)
    return stripped.count("[") - stripped.count("]")


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class TomlSource:
    path: str
    text: str
    data: dict[str, Any]
    _lines: LineMap | None = None

    @property
    def lines(self) -> LineMap:
        """Built on the first problem: a valid file never pays for the scan (seconds on a 100k-device file)."""
        if self._lines is None:
            self._lines = LineMap(self.text)
        return self._lines

    def problem(self, loc: Loc, message: str, severity: Literal["error", "warning"] = "error") -> Problem:
        return Problem(self.path, self.lines.line_of(loc), format_loc(loc), message, severity)


def read_toml(path: str | Path) -> TomlSource:
    """Read and parse a TOML file; syntax errors become a SourceError with the line."""
    name = str(path)
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # never more, whatever the path is (a device, a pipe)
        if len(raw) > MAX_FILE_BYTES:
            raise SourceError([Problem(name, None, "", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: "
                                                       f"not read (is this the right file?)")])
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SourceError([Problem(name, None, "", "file not found")]) from None
    except OSError as exc:
        raise SourceError([Problem(name, None, "", f"cannot read file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise SourceError([Problem(name, None, "", "not UTF-8 text")]) from None
    return parse_toml(text, name)


def parse_toml(text: str, name: str = "<string>") -> TomlSource:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise SourceError([Problem(name, None, "", "TOML nested too deeply")]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(match.group(1)) if match else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise SourceError([Problem(name, line, "", f"TOML syntax error: {msg}")]) from None
    return TomlSource(name, text, data)


def validate(source: TomlSource, model: type[M]) -> M:
    """Validate with pydantic; every error names file, line and field."""
    try:
        return model.model_validate(source.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown field (check the spelling; see config.example.toml)"
            elif err["type"] == "missing":
                message = "required field is missing"
            problems.append(source.problem(loc, message))
        raise SourceError(problems) from None
