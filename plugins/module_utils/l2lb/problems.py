"""Validation problems: every problem names the object, the field and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input.

    ``obj`` names the object (``pool "lan"``), ``field`` the path inside it (``blocks[0].cidr``),
    ``message`` what is wrong and ``fix`` what to do about it.
    """

    obj: str
    field: str
    message: str
    fix: str = ""
    kind: str = "invalid"

    def __str__(self) -> str:
        where = f"{self.obj}: {self.field}" if self.field else self.obj
        text = f"{where}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text

    def to_dict(self) -> dict[str, str]:
        return {
            "object": self.obj,
            "field": self.field,
            "kind": self.kind,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class Problems:
    """Collects every problem of one validation pass, so the user sees them all at once."""

    items: list[Problem] = field(default_factory=list)

    def add(self, obj: str, field_path: str, message: str, fix: str = "", kind: str = "invalid") -> None:
        self.items.append(Problem(obj, field_path, message, fix, kind))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)


class ModelError(ValueError):
    """Raised when the input has problems; carries all of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the l2lb model:\n{lines}")


def type_name(value: Any) -> str:
    """The YAML-ish name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def join_path(prefix: str, name: str | int) -> str:
    """``blocks`` + 0 -> ``blocks[0]``; ``spec`` + ``cidr`` -> ``spec.cidr``."""
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def check_known_keys(raw: Mapping[str, Any], known: Iterable[str], obj: str, prefix: str, problems: Problems) -> None:
    """Report keys that are not part of the schema, suggesting the closest known key."""
    known_list = sorted(known)
    for key in raw:
        if key in known_list:
            continue
        close = difflib.get_close_matches(str(key), known_list, n=1, cutoff=0.6)
        if not close:
            lowered = {k.lower(): k for k in known_list}
            hit = lowered.get(str(key).lower())
            close = [hit] if hit else []
        fix = f'did you mean "{close[0]}"?' if close else f"remove it; known keys: {', '.join(known_list)}"
        problems.add(obj, join_path(prefix, str(key)), "unknown key", fix, kind="unknown_key")


def expect_type(
    value: Any, expected: type | tuple[type, ...], obj: str, path: str, problems: Problems, wanted: str
) -> bool:
    """True when ``value`` has the expected type; otherwise records a wrong-type problem."""
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        ok = False
    else:
        ok = isinstance(value, expected)
    if not ok:
        problems.add(
            obj,
            path,
            f"expected {wanted}, got {type_name(value)} {value!r}",
            f"write a {wanted}",
            kind="wrong_type",
        )
    return ok
