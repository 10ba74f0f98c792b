"""Custom-resource schemas: pruning, defaulting and validation against a CRD's ``openAPIV3Schema``.

This follows what apiextensions-apiserver does with a *structural* schema, in the same order:

1. prune: unknown fields are dropped (and reported, so the API can send ``Warning: unknown field`` or
   refuse them with ``fieldValidation=Strict``), except under ``x-kubernetes-preserve-unknown-fields``,
   ``additionalProperties`` and inside ``x-kubernetes-embedded-resource`` objects' ``apiVersion``/``kind``/
   ``metadata``; at the root ``apiVersion``, ``kind`` and ``metadata`` are kept and ``metadata`` is
   reduced to ObjectMeta fields;
2. ``null`` in a non-nullable field is replaced by its ``default`` or dropped;
3. ``default`` values are filled in for absent properties;
4. validation: ``type`` (with ``nullable`` and ``x-kubernetes-int-or-string``), ``format``, ``enum``,
   ``pattern``, ``minimum``/``maximum`` (+ ``exclusive*``), ``multipleOf``, ``minLength``/``maxLength``,
   ``minItems``/``maxItems``, ``minProperties``/``maxProperties``, ``required``, ``properties``,
   ``additionalProperties``, ``items``, ``allOf``/``anyOf``/``oneOf``/``not``, and
   ``x-kubernetes-list-type`` ``set``/``map`` uniqueness. Messages use kube-openapi's wording
   (``spec.blocks[0].cidr in body should match '...'``) wrapped in field errors.

Deliberately not implemented: ``x-kubernetes-validations`` (CEL rules are accepted and ignored) and
validation ratcheting on update.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import uuid
from functools import lru_cache
from typing import Any

from .errors import FieldError, invalid, not_supported, required, too_long, too_many
from .errors import FieldError as _FieldError

Schema = dict[str, Any]

OBJECT_META_FIELDS = frozenset(
    {
        "annotations",
        "creationTimestamp",
        "deletionGracePeriodSeconds",
        "deletionTimestamp",
        "finalizers",
        "generateName",
        "generation",
        "labels",
        "managedFields",
        "name",
        "namespace",
        "ownerReferences",
        "resourceVersion",
        "selfLink",
        "uid",
    }
)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- pruning -------------------------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema) -> list[str]:
    """Drop fields the schema does not know, in place; return their paths (``spec.foo``)."""
    unknown: list[str] = []
    _prune_object(obj, schema, "", unknown, root=True)
    return unknown


def _prune_object(value: dict[str, Any], schema: Schema, path: str, unknown: list[str], root: bool) -> None:
    embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key in list(value):
        child_path = _join(path, key)
        if embedded and key in ("apiVersion", "kind"):
            continue
        if embedded and key == "metadata" and isinstance(value[key], dict):
            if root:
                for meta_key in list(value[key]):
                    if meta_key not in OBJECT_META_FIELDS:
                        unknown.append(_join(child_path, meta_key))
                        del value[key][meta_key]
            continue
        if key in properties:
            _prune_value(value[key], properties[key], child_path, unknown)
        elif isinstance(additional, dict):
            _prune_value(value[key], additional, child_path, unknown)
        elif additional is True or preserve:
            continue
        else:
            unknown.append(child_path)
            del value[key]


def _prune_value(value: Any, schema: Schema, path: str, unknown: list[str]) -> None:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-int-or-string"):
            return
        _prune_object(value, schema, path, unknown, root=False)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _prune_value(item, items, f"{path}[{i}]", unknown)


# --- defaulting ----------------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill ``default`` values for absent properties and resolve ``null`` in non-nullable fields, in place."""
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        for key, prop in properties.items():
            if key in value and value[key] is None and not prop.get("nullable"):
                if "default" in prop:
                    value[key] = copy.deepcopy(prop["default"])
                else:
                    del value[key]
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        for key, child in value.items():
            if key in properties:
                apply_defaults(child, properties[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(child, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# --- validation ----------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_type(value: Any, type_name: str) -> bool:
    if type_name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if type_name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "array":
        return isinstance(value, list)
    if type_name == "object":
        return isinstance(value, dict)
    return True


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _check_format(fmt: str, value: str) -> bool:
    try:
        if fmt == "ipv4":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address) and "/" not in value
        if fmt == "ipv6":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv6Address)
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        if fmt == "mac":
            return re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", value) is not None
        if fmt in ("uuid", "uuid3", "uuid4", "uuid5"):
            parsed = uuid.UUID(value)
            return fmt == "uuid" or parsed.version == int(fmt[-1])
        if fmt == "hostname":
            return (
                re.fullmatch(
                    r"(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*",
                    value,
                )
                is not None
            )
        if fmt == "date":
            datetime.date.fromisoformat(value)
            return re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None
        if fmt in ("date-time", "datetime"):
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return "T" in value or "t" in value
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt == "email":
            return re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value) is not None
        if fmt == "uri":
            return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S*", value) is not None
        if fmt == "duration":
            return re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+", value) is not None
    except ValueError:
        return False
    return True


def validate(obj: Any, schema: Schema) -> list[FieldError]:
    """Validate a whole custom object (root path is empty, so errors read ``spec.x: ...``)."""
    errors: list[FieldError] = []
    _validate(obj, schema, "", errors, root=True)
    return errors


def _type_error(path: str, value: Any, type_name: str) -> _FieldError:
    shown = path or "body"
    return FieldError(
        "type_invalid",
        path,
        _json_type(value),
        f'{shown} in body must be of type {type_name}: "{_json_type(value)}"',
    )


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError], root: bool = False) -> None:
    shown = path or "body"
    if value is None:
        if schema.get("nullable") or (not schema.get("type") and schema.get("x-kubernetes-preserve-unknown-fields")):
            return
        if schema.get("type"):
            errors.append(_type_error(path, value, schema["type"]))
            return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _is_type(value, "integer")):
            errors.append(_type_error(path, value, "integer,string"))
            return
    elif "type" in schema and not _is_type(value, schema["type"]):
        errors.append(_type_error(path, value, schema["type"]))
        return

    if isinstance(value, str):
        fmt = schema.get("format")
        if fmt and not _check_format(fmt, value):
            errors.append(invalid(path, value, f'{shown} in body must be of type {fmt}: "{value}"'))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(too_long(path, int(schema["maxLength"])))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(invalid(path, value, f"{shown} in body should be at least {schema['minLength']} chars long"))
        if "pattern" in schema:
            regex = _regex(schema["pattern"])
            if regex is not None and not regex.search(value):
                errors.append(invalid(path, value, f"{shown} in body should match '{schema['pattern']}'"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)
    if "enum" in schema and value not in schema["enum"]:
        allowed = [v if isinstance(v, str) else json.dumps(v) for v in schema["enum"]]
        errors.append(not_supported(path, value, allowed))

    if isinstance(value, dict):
        _validate_object(value, schema, path, errors, root)
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)
    _validate_composition(value, schema, path, errors)


def _validate_number(value: float, schema: Schema, path: str, errors: list[FieldError]) -> None:
    shown = path or "body"
    shown_value: Any = int(value) if isinstance(value, float) and value.is_integer() else value
    if "minimum" in schema:
        minimum = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= minimum:
            errors.append(invalid(path, shown_value, f"{shown} in body should be greater than {_num(minimum)}"))
        elif value < minimum:
            errors.append(
                invalid(path, shown_value, f"{shown} in body should be greater than or equal to {_num(minimum)}")
            )
    if "maximum" in schema:
        maximum = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= maximum:
            errors.append(invalid(path, shown_value, f"{shown} in body should be less than {_num(maximum)}"))
        elif value > maximum:
            errors.append(
                invalid(path, shown_value, f"{shown} in body should be less than or equal to {_num(maximum)}")
            )
    if schema.get("multipleOf"):
        quotient = value / schema["multipleOf"]
        if abs(quotient - round(quotient)) > 1e-9:
            errors.append(
                invalid(path, shown_value, f"{shown} in body should be a multiple of {_num(schema['multipleOf'])}")
            )


def _num(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _validate_object(value: dict[str, Any], schema: Schema, path: str, errors: list[FieldError], root: bool) -> None:
    shown = path or "body"
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(required(_join(path, key)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(too_many(path, len(value), int(schema["maxProperties"])))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            invalid(path, len(value), f"{shown} in body should have at least {schema['minProperties']} properties")
        )
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, child in value.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        child_path = _join(path, key)
        if key in properties:
            _validate(child, properties[key], child_path, errors)
        elif isinstance(additional, dict):
            _validate(child, additional, child_path, errors)
        elif additional is False and properties:
            errors.append(invalid(child_path, child, f"{child_path} in body is a forbidden property"))


def _validate_array(value: list[Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    shown = path or "body"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(too_many(path, len(value), int(schema["maxItems"])))
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(invalid(path, len(value), f"{shown} in body should have at least {schema['minItems']} items"))
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", errors)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errors.append(FieldError("duplicate", f"{path}[{i}]", item))
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[dict[str, Any]] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys if k in item}
            if key in seen_keys:
                errors.append(FieldError("duplicate", f"{path}[{i}]", key))
            else:
                seen_keys.append(key)


def _validate_composition(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    shown = path or "body"
    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, errors)
    if schema.get("anyOf") and not any(_valid(value, sub, path) for sub in schema["anyOf"]):
        errors.append(invalid(path, value, f"{shown} in body must validate at least one schema (anyOf)"))
    if schema.get("oneOf"):
        # go-openapi's composite error has no field (it shows as "<nil>") and, when no alternative
        # matches, is followed by the errors of the first alternative with the fewest of them.
        failures = [_branch_errors(value, sub, path) for sub in schema["oneOf"]]
        matches = sum(1 for branch in failures if not branch)
        if matches != 1:
            found = "Found none valid" if matches == 0 else f"Found {matches} valid alternatives"
            errors.append(invalid("<nil>", "", f'"{shown}" must validate one and only one schema (oneOf). {found}'))
            if matches == 0:
                errors.extend(min(failures, key=len))
    if isinstance(schema.get("not"), dict) and _valid(value, schema["not"], path):
        errors.append(invalid(path, value, f"{shown} in body must not validate the schema (not)"))


def _branch_errors(value: Any, schema: Schema, path: str) -> list[FieldError]:
    branch: list[FieldError] = []
    _validate(value, schema, path, branch)
    return branch


def _valid(value: Any, schema: Schema, path: str) -> bool:
    return not _branch_errors(value, schema, path)


# --- schema checks at CRD registration ------------------------------------------------------------------


def structural_errors(schema: Any, path: str) -> list[FieldError]:
    """The structural-schema rules apiextensions enforces that matter for serving: types present."""
    errors: list[FieldError] = []
    if not isinstance(schema, dict):
        return [required(path, "schemas are required")]
    if schema.get("type") != "object":
        errors.append(
            invalid(f"{path}.type", schema.get("type", ""), "must be object at the root")
            if schema.get("type")
            else required(f"{path}.type", "must not be empty at the root")
        )
    _structural_walk(schema, path, errors, root=True)
    return errors


def _structural_walk(schema: Schema, path: str, errors: list[FieldError], root: bool = False) -> None:
    exempt = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not root and not schema.get("type") and not exempt:
        errors.append(required(f"{path}.type", "must not be empty for specified object fields"))
    for key, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict):
            _structural_walk(prop, f"{path}.properties[{key}]", errors)
    if isinstance(schema.get("items"), dict):
        _structural_walk(schema["items"], f"{path}.items", errors)
    if isinstance(schema.get("additionalProperties"), dict):
        _structural_walk(schema["additionalProperties"], f"{path}.additionalProperties", errors)
    if schema.get("properties") and schema.get("additionalProperties") not in (None, False):
        errors.append(
            FieldError(
                "forbidden",
                f"{path}.additionalProperties",
                detail="additionalProperties and properties are mutual exclusive",
            )
        )
