"""Kubernetes label selectors with the API server's semantics.

``matchLabels`` and ``matchExpressions`` are ANDed. ``In`` needs the label with one of the values;
``NotIn`` matches when the label is absent or has none of the values; ``Exists``/``DoesNotExist``
take no values. An empty selector (``{}``) matches everything. What an *absent* selector means is
up to the field that holds it (the policy and pool fields say "absent = all"), so parsing returns
``None`` for absent and callers decide with :func:`selector_matches`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .problems import Problems, check_known_keys, expect_type, join_path, type_name

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' is empty"
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return f"prefix {prefix!r} is not a DNS subdomain (lowercase letters, digits, '-', '.')"
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return "name part must be 1-63 characters of letters, digits, '-', '_', '.', starting and ending alphanumeric"
    return None


def label_value_error(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None when it is."""
    if value == "":
        return None
    if len(value) > 63 or not _NAME_RE.match(value):
        return "must be at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric"
    return None


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.operator in ("In", "NotIn"):
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class LabelSelector:
    """A parsed ``metav1.LabelSelector``."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        return all(req.matches(labels) for req in self.match_expressions)

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    @property
    def keys(self) -> frozenset[str]:
        """Every label key the selector looks at."""
        return frozenset(k for k, _ in self.match_labels) | frozenset(r.key for r in self.match_expressions)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [r.to_dict() for r in self.match_expressions]
        return out


# Cilium's pseudo-labels: a Service's serviceSelector (pools and policies) also sees its namespace and name under
# these keys, as if they were labels (they override real labels of the same key, as in Cilium's LB-IPAM).
SERVICE_NAMESPACE_LABEL = "io.kubernetes.service.namespace"
SERVICE_NAME_LABEL = "io.kubernetes.service.name"


def service_selector_labels(namespace: str, name: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    """What a pool's or policy's serviceSelector matches for a Service: its labels plus the pseudo-labels."""
    return {**(labels or {}), SERVICE_NAMESPACE_LABEL: namespace, SERVICE_NAME_LABEL: name}


def uses_pseudo_labels(selectors: Iterable[LabelSelector | None]) -> bool:
    """Whether any of ``selectors`` looks at a pseudo-label (else matching on the labels alone is the same, and
    caches keyed by label set stay small)."""
    pseudo = {SERVICE_NAMESPACE_LABEL, SERVICE_NAME_LABEL}
    return any(selector is not None and selector.keys & pseudo for selector in selectors)


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str] | None, absent: bool) -> bool:
    """Match ``labels``; ``absent`` is what a missing selector means for this field."""
    if selector is None:
        return absent
    return selector.matches(labels)


def parse_label_selector(raw: Any, obj: str, path: str, problems: Problems) -> LabelSelector | None:
    """Parse and validate a label selector; records every problem and returns None if any."""
    if raw is None:
        return None
    if not expect_type(raw, Mapping, obj, path, problems, "mapping with matchLabels/matchExpressions"):
        return None
    before = len(problems)
    check_known_keys(raw, ("matchLabels", "matchExpressions"), obj, path, problems)
    labels: list[tuple[str, str]] = []
    raw_labels = raw.get("matchLabels") or {}
    labels_path = join_path(path, "matchLabels")
    if expect_type(raw_labels, Mapping, obj, labels_path, problems, "mapping of label key to value"):
        for key, value in raw_labels.items():
            _check_key(key, obj, join_path(labels_path, str(key)), problems)
            value_path = join_path(labels_path, str(key))
            if not isinstance(value, str):
                problems.add(
                    obj,
                    value_path,
                    f"label value must be a string, got {type_name(value)} {value!r}",
                    f'quote it: "{_yaml_scalar(value)}"',
                    kind="wrong_type",
                )
                continue
            err = label_value_error(value)
            if err:
                problems.add(obj, value_path, f"invalid label value {value!r}: {err}", "use a valid label value")
                continue
            labels.append((str(key), value))
    requirements: list[Requirement] = []
    raw_exprs = raw.get("matchExpressions") or []
    exprs_path = join_path(path, "matchExpressions")
    if expect_type(raw_exprs, list, obj, exprs_path, problems, "list of {key, operator, values}"):
        for index, expr in enumerate(raw_exprs):
            req = _parse_requirement(expr, obj, join_path(exprs_path, index), problems)
            if req is not None:
                requirements.append(req)
    if len(problems) > before:
        return None
    return LabelSelector(tuple(sorted(labels)), tuple(requirements))


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_key(key: Any, obj: str, path: str, problems: Problems) -> bool:
    if not isinstance(key, str):
        problems.add(obj, path, f"label key must be a string, got {type_name(key)}", "quote the key", kind="wrong_type")
        return False
    err = label_key_error(key)
    if err:
        problems.add(obj, path, f"invalid label key {key!r}: {err}", "use a valid label key such as example.com/role")
        return False
    return True


def _parse_requirement(expr: Any, obj: str, path: str, problems: Problems) -> Requirement | None:
    if not expect_type(expr, Mapping, obj, path, problems, "mapping with key, operator and values"):
        return None
    before = len(problems)
    check_known_keys(expr, ("key", "operator", "values"), obj, path, problems)
    key = expr.get("key")
    if key is None:
        problems.add(obj, join_path(path, "key"), "missing", "name the label key to test", kind="missing")
    else:
        _check_key(key, obj, join_path(path, "key"), problems)
    operator = expr.get("operator")
    op_path = join_path(path, "operator")
    if operator is None:
        problems.add(obj, op_path, "missing", f"use one of {', '.join(OPERATORS)}", kind="missing")
    elif operator not in OPERATORS:
        close = [op for op in OPERATORS if op.lower() == str(operator).lower()]
        fix = f'did you mean "{close[0]}"?' if close else f"use one of {', '.join(OPERATORS)}"
        problems.add(obj, op_path, f"unknown operator {operator!r}", fix, kind="unknown_operator")
    values = expr.get("values")
    values_path = join_path(path, "values")
    clean_values: list[str] = []
    if operator in ("Exists", "DoesNotExist"):
        if values:
            problems.add(
                obj,
                values_path,
                f"values must be empty with operator {operator}",
                "remove values, or use In/NotIn",
                kind="values_with_exists",
            )
    elif operator in ("In", "NotIn"):
        if not values:
            problems.add(
                obj,
                values_path,
                f"operator {operator} needs at least one value",
                "list the label values to match",
                kind="missing",
            )
        elif expect_type(values, list, obj, values_path, problems, "list of strings"):
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    problems.add(
                        obj,
                        join_path(values_path, i),
                        f"label value must be a string, got {type_name(value)} {value!r}",
                        f'quote it: "{_yaml_scalar(value)}"',
                        kind="wrong_type",
                    )
                    continue
                err = label_value_error(value)
                if err:
                    problems.add(
                        obj,
                        join_path(values_path, i),
                        f"invalid label value {value!r}: {err}",
                        "use a valid label value",
                    )
                clean_values.append(value)
    if len(problems) > before:
        return None
    return Requirement(str(key), str(operator), tuple(clean_values))
