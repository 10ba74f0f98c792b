"""Name, label and object-metadata validation with kube-apiserver's rules and messages."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .errors import FieldError, forbidden, invalid, required, too_long

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"

_MSG_DNS1123_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    f"'{_DNS1123_LABEL}')"
)
_MSG_DNS1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{_DNS1123_SUBDOMAIN}')"
)
_MSG_DNS1035_LABEL = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    f"validation is '{_DNS1035_LABEL}')"
)
_MSG_QUALIFIED_NAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    f"'{_QUALIFIED_NAME}')"
)
_MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    f"for validation is '{_LABEL_VALUE}')"
)
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def dns1123_label(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        problems.append(_MSG_DNS1123_LABEL)
    return problems


def dns1123_subdomain(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        problems.append(_MSG_DNS1123_SUBDOMAIN)
    return problems


def dns1035_label(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_LABEL, value):
        problems.append(_MSG_DNS1035_LABEL)
    return problems


def path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NAME_VALIDATORS = {
    "label": dns1123_label,
    "subdomain": dns1123_subdomain,
    "dns1035": dns1035_label,
    "path": path_segment,
}


def qualified_name(value: str) -> list[str]:
    """Label keys and annotation keys: ``[prefix/]name``."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        problems = [f"prefix part {p}" for p in dns1123_subdomain(prefix)]
        if problems:
            return problems
    else:
        return [
            "a qualified name "
            + _MSG_QUALIFIED_NAME.replace("name part ", "")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    problems = []
    if not name:
        problems.append("name part must be non-empty")  # and the pattern below fails too, as in Go
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if not re.fullmatch(_QUALIFIED_NAME, name):
        problems.append(_MSG_QUALIFIED_NAME)
    return problems


def label_value(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL_VALUE, value):
        problems.append(_MSG_LABEL_VALUE)
    return problems


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(labels, dict):
        return errors
    for key, value in labels.items():
        for problem in qualified_name(key):
            errors.append(invalid(path, key, problem))
        if isinstance(value, str):
            for problem in label_value(value):
                errors.append(invalid(f"{path}[{key}]", value, problem))
    return errors


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(annotations, dict):
        return errors
    total = 0
    for key, value in annotations.items():
        for problem in qualified_name(key.lower()):
            errors.append(invalid(path, key, problem))
        total += len(key) + len(str(value))
    if total > _MAX_ANNOTATIONS_BYTES:
        errors.append(too_long(path, _MAX_ANNOTATIONS_BYTES))
    return errors


def validate_object_meta(meta: dict[str, Any], name_rule: str, namespaced: bool) -> list[FieldError]:
    """``ValidateObjectMeta``: name, namespace, labels, annotations, finalizers and owner references."""
    errors: list[FieldError] = []
    name = meta.get("name", "")
    if not name:
        if not meta.get("generateName"):
            errors.append(required("metadata.name", "name or generateName is required"))
    else:
        for problem in NAME_VALIDATORS[name_rule](name):
            errors.append(invalid("metadata.name", name, problem))
    if namespaced:
        namespace = meta.get("namespace", "")
        if not namespace:
            errors.append(required("metadata.namespace", ""))
        else:
            for problem in dns1123_label(namespace):
                errors.append(invalid("metadata.namespace", namespace, problem))
    errors += validate_labels(meta.get("labels"), "metadata.labels")
    errors += validate_annotations(meta.get("annotations"), "metadata.annotations")
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        for problem in qualified_name(finalizer):
            errors.append(invalid(f"metadata.finalizers[{i}]", finalizer, problem))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errors.append(invalid(f"{path}.{key}", ref.get(key, ""), f"{key} must not be empty"))
    if meta.get("generation", 0) < 0:
        errors.append(invalid("metadata.generation", meta["generation"], "must be greater than or equal to 0"))
    return errors


def validate_immutable_meta(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    if new.get("name") != old.get("name"):
        errors.append(invalid("metadata.name", new.get("name"), "field is immutable"))
    if new.get("namespace", "") != old.get("namespace", ""):
        errors.append(invalid("metadata.namespace", new.get("namespace"), "field is immutable"))
    return errors


def is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_error(path: str, value: Any) -> FieldError:
    return invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")


def port_error(path: str, value: Any) -> FieldError:
    return invalid(path, value, "must be between 1 and 65535, inclusive")


def forbid(path: str, detail: str) -> FieldError:
    return forbidden(path, detail)
