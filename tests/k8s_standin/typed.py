"""Decoding of built-in kinds as kube-apiserver's typed JSON decoder sees them.

kube-apiserver decodes built-in objects into Go structs: unknown fields are dropped (reported as
``Warning: unknown field "spec.foo"``, or refused with ``fieldValidation=Strict``), a value of the wrong
JSON type is a 400, ``null`` means "not set", and timestamps are re-rendered (``metav1.Time`` to whole
seconds, ``metav1.MicroTime`` to microseconds, both in UTC with ``Z``).

The stand-in has no Go structs, so it reads the field names and types of the official Python client's
models (``kubernetes.client.models``, generated from the same OpenAPI document as the server) and walks
request bodies with them. Required fields in that document (``port`` of a ServicePort, ``addressType``
of an EndpointSlice, ...) get their Go zero value when absent, for validation to judge.
"""

from __future__ import annotations

import datetime
import re
from functools import cache
from typing import Any

from kubernetes.client import models as _models

# (model, python attribute) pairs whose Go type is metav1.MicroTime rather than metav1.Time.
_MICRO_TIME_FIELDS = {
    ("V1LeaseSpec", "acquire_time"),
    ("V1LeaseSpec", "renew_time"),
    ("CoreV1Event", "event_time"),
    ("CoreV1EventSeries", "last_observed_time"),
    ("EventsV1Event", "event_time"),
    ("EventsV1EventSeries", "last_observed_time"),
}


class DecodeError(ValueError):
    """A body that the typed decoder would refuse (HTTP 400)."""


@cache
def _fields(model: str) -> dict[str, tuple[str, str, bool]]:
    """JSON field name -> (type string, python attribute, required) for one client model."""
    cls = getattr(_models, model)
    out: dict[str, tuple[str, str, bool]] = {}
    for attr, json_name in cls.attribute_map.items():
        field = cls.model_fields.get(attr)
        out[json_name] = (cls.openapi_types[attr], attr, bool(field and field.is_required()))
    return out


def has_model(model: str) -> bool:
    try:
        getattr(_models, model)
    except AttributeError:
        return False
    return True


def _go_struct(model: str) -> str:
    return re.sub(r"^(V\d+(alpha\d+|beta\d+)?|[A-Z][a-z]+V\d+)", "", model)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_GO_TYPES = {
    "str": "string",
    "int": "int64",
    "bool": "bool",
    "float": "float64",
    "datetime": "v1.Time",
    "bytes": "[]uint8",
}


def format_time(moment: datetime.datetime, micro: bool) -> str:
    moment = moment.astimezone(datetime.UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime.datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"missing time zone in {value!r}")
    return moment


def decode(obj: dict[str, Any], model: str) -> tuple[dict[str, Any], list[str]]:
    """Return the object as the typed decoder would keep it, plus the paths of dropped unknown fields."""
    unknown: list[str] = []
    result = _decode_model(obj, model, "", unknown, model)
    return result, unknown


def _decode_model(value: Any, model: str, path: str, unknown: list[str], struct: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field {_go_struct(struct)}.{path or 'body'} "
            f"of type {_go_struct(model)}"
        )
    fields = _fields(model)
    out: dict[str, Any] = {}
    for key, child in value.items():
        child_path = f"{path}.{key}" if path else key
        if key not in fields:
            unknown.append(child_path)
            continue
        if child is None:
            continue
        type_string, attr, _ = fields[key]
        micro = (model, attr) in _MICRO_TIME_FIELDS
        out[key] = _decode_value(child, type_string, child_path, unknown, model, micro)
    return out


def _decode_value(value: Any, type_string: str, path: str, unknown: list[str], struct: str, micro: bool) -> Any:
    def refuse(go_type: str) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field {_go_struct(struct)}.{path} "
            f"of type {go_type}"
        )

    if type_string.startswith("List["):
        if not isinstance(value, list):
            raise refuse("[]" + _GO_TYPES.get(type_string[5:-1], _go_struct(type_string[5:-1])))
        inner = type_string[5:-1]
        return [_decode_value(item, inner, path, unknown, struct, micro) for item in value if item is not None]
    if type_string.startswith("Dict[str, "):
        inner = type_string[len("Dict[str, ") : -1]
        if not isinstance(value, dict):
            raise refuse("map[string]" + _GO_TYPES.get(inner, inner))
        return {
            k: _decode_value(v, inner, f"{path}.{k}", unknown, struct, micro) for k, v in value.items() if v is not None
        }
    if type_string == "str":
        if not isinstance(value, str):
            raise refuse("string")
        return value
    if type_string == "int":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise refuse("int32")
        return int(value)
    if type_string == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise refuse("float64")
        return value
    if type_string == "bool":
        if not isinstance(value, bool):
            raise refuse("bool")
        return value
    if type_string == "bytes":
        if not isinstance(value, str):
            raise refuse("[]uint8")
        return value
    if type_string == "datetime":
        if not isinstance(value, str):
            raise refuse("v1.Time")
        try:
            return format_time(parse_time(value), micro)
        except ValueError as exc:
            raise DecodeError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": {exc}') from None
    if type_string == "object":
        return value
    if has_model(type_string):
        return _decode_model(value, type_string, path, unknown, type_string)
    return value


_ZERO_VALUES: dict[str, Any] = {"str": "", "int": 0, "bool": False, "float": 0}


def fill_required(obj: dict[str, Any], model: str) -> None:
    """Give absent required fields their Go zero value, as decoding into a Go struct does.

    The OpenAPI document marks fields required when the Go field has no ``omitempty``; such a field is
    always present in the server's answers (``"message": ""``), so clients may rely on it. Validation then
    judges the zero value (``port`` 0 is "must be between 1 and 65535"). Timestamps stay absent.
    """
    for key, (type_string, _, is_required) in _fields(model).items():
        if key not in obj:
            if not is_required:
                continue
            if type_string in _ZERO_VALUES:
                obj[key] = _ZERO_VALUES[type_string]
            elif type_string.startswith("List["):
                obj[key] = []
            elif type_string.startswith("Dict[") or has_model(type_string):
                obj[key] = {}
            else:
                continue
        value = obj[key]
        if has_model(type_string) and isinstance(value, dict):
            fill_required(value, type_string)
        elif type_string.startswith("List[") and has_model(type_string[5:-1]) and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    fill_required(item, type_string[5:-1])
        elif type_string.startswith("Dict[str, ") and isinstance(value, dict):
            inner = type_string[len("Dict[str, ") : -1]
            if has_model(inner):
                for item in value.values():
                    if isinstance(item, dict):
                        fill_required(item, inner)
