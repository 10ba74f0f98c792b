"""Label and field selectors with the syntax and semantics of ``k8s.io/apimachinery`` (labels, fields)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request
from .validation import label_value, qualified_name

_SET_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s!=<>(),]*)$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if not present:
            return False
        try:
            have, want = int(str(value)), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == ">" else have < want


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms]


def _check_key(key: str, text: str) -> None:
    problems = qualified_name(key)
    if problems:
        raise bad_request(f'unable to parse requirement: values[0][{key}]: Invalid value: "{key}": {problems[0]}')


def _check_value(key: str, value: str) -> None:
    problems = label_value(value)
    if problems:
        raise bad_request(f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": {problems[0]}')


class LabelSelector:
    """A parsed ``labelSelector`` query parameter; an empty selector matches everything."""

    def __init__(self, text: str | None) -> None:
        self.text = text or ""
        self.requirements: list[Requirement] = []
        if not self.text.strip():
            return
        for term in _split_terms(self.text):
            if not term:
                raise bad_request(f"unable to parse requirement: found '', expected: identifier in {self.text!r}")
            self.requirements.append(self._parse(term))

    def _parse(self, term: str) -> Requirement:
        if term.startswith("!"):
            key = term[1:].strip()
            _check_key(key, term)
            return Requirement(key, "!")
        match = _SET_TERM.match(term)
        if match:
            key = match["key"]
            _check_key(key, term)
            values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
            for value in values:
                _check_value(key, value)
            if not values and match["op"] == "in":
                raise bad_request("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
            return Requirement(key, match["op"], values)
        match = _CMP_TERM.match(term)
        if match:
            key, op, value = match["key"], match["op"], match["value"]
            _check_key(key, term)
            if op in (">", "<"):
                if not re.fullmatch(r"-?\d+", value):
                    raise bad_request(
                        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"
                    )
            else:
                _check_value(key, value)
            return Requirement(key, "=" if op == "==" else op, (value,))
        if re.fullmatch(r"[^\s!=<>(),]+", term):
            _check_key(term, term)
            return Requirement(term, "exists")
        raise bad_request(f"unable to parse requirement: couldn't parse the selector string {self.text!r}")

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


FieldGetter = Callable[[dict[str, Any]], str]


class FieldSelector:
    """A parsed ``fieldSelector``: terms ``field=value``, ``field==value`` or ``field!=value``."""

    def __init__(self, text: str | None) -> None:
        self.text = text or ""
        self.terms: list[tuple[str, str, str]] = []
        if not self.text.strip():
            return
        for term in _split_unescaped(self.text, ","):
            match = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)(.*)$", term)
            if not match:
                raise bad_request(f"invalid selector: '{self.text}'; can't understand '{term}'")
            field, op, value = match.group(1), match.group(2), _unescape(match.group(3).strip())
            self.terms.append((field, "=" if op == "==" else op, value))

    def check_fields(self, getters: Mapping[str, FieldGetter], resource: str) -> None:
        for field, _, _ in self.terms:
            if field not in getters:
                raise ApiError(400, "BadRequest", f"field label not supported: {field}")

    def matches(self, obj: dict[str, Any], getters: Mapping[str, FieldGetter]) -> bool:
        for field, op, value in self.terms:
            have = getters[field](obj)
            if (have == value) != (op == "="):
                return False
        return True

    def name(self) -> str:
        """The object name if the selector pins ``metadata.name`` (used for RBAC resourceNames)."""
        for field, op, value in self.terms:
            if field == "metadata.name" and op == "=":
                return value
        return ""

    def __bool__(self) -> bool:
        return bool(self.terms)


def dotted_getter(path: str) -> FieldGetter:
    """A field getter that reads a dotted path and renders it as the API does in field sets."""
    keys = path.split(".")

    def get(obj: dict[str, Any]) -> str:
        node: Any = obj
        for key in keys:
            if not isinstance(node, dict):
                return ""
            node = node.get(key)
        if node is None:
            return ""
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node)

    return get
