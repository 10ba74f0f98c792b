"""API errors as kube-apiserver reports them: a ``Status`` object with ``reason``, ``code`` and a message.

Field errors follow ``k8s.io/apimachinery/pkg/util/validation/field``: ``<path>: <type>: <value>: <detail>``,
and an invalid object is reported as ``<Kind>[.<group>] "<name>" is invalid: <errors>`` with one
``details.causes`` entry per field error, so clients and tests see the same text as from a real server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_OMIT: Any = object()

# field.ErrorType -> (text in messages, reason in Status causes)
_FIELD_ERROR_TYPES: dict[str, tuple[str, str]] = {
    "required": ("Required value", "FieldValueRequired"),
    "forbidden": ("Forbidden", "FieldValueForbidden"),
    "too_long": ("Too long", "FieldValueTooLong"),
    "internal": ("Internal error", "InternalError"),
    "invalid": ("Invalid value", "FieldValueInvalid"),
    "type_invalid": ("Invalid value", "FieldValueTypeInvalid"),
    "not_supported": ("Unsupported value", "FieldValueNotSupported"),
    "not_found": ("Not found", "FieldValueNotFound"),
    "duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "too_many": ("Too many", "FieldValueTooMany"),
}
_VALUE_FREE_TYPES = {"required", "forbidden", "too_long", "internal"}


def go_repr(value: Any) -> str:
    """Render a JSON value roughly as Go's ``%#v`` prints it for unstructured data."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))}:{go_repr(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_repr(v) for v in value) + "}"
    return repr(value)


def _go_simple(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    return go_repr(value)


@dataclass
class FieldError:
    """One validation failure on one field, like ``field.Error``."""

    type: str
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        text, _ = _FIELD_ERROR_TYPES[self.type]
        if self.type not in _VALUE_FREE_TYPES and self.value is not _OMIT:
            text = f"{text}: {_go_simple(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def reason(self) -> str:
        return _FIELD_ERROR_TYPES[self.type][1]

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("required", path, detail=detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("invalid", path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("forbidden", path, detail=detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported else ""
    return FieldError("not_supported", path, value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("duplicate", path, value)


def too_long(path: str, max_length: int) -> FieldError:
    return FieldError("too_long", path, detail=f"may not be more than {max_length} bytes")


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    return FieldError("too_many", path, actual, f"must have at most {maximum} items")


def qualified_resource(group: str, resource: str) -> str:
    """``services`` or ``leases.coordination.k8s.io`` — how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def qualified_kind(group: str, kind: str) -> str:
    return f"{kind}.{group}" if group else kind


class ApiError(Exception):
    """An error response; ``status()`` is the ``Status`` body a real API server would send."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details.update(extra)
    return details


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified_resource(group, resource)} "{name}" not found',
        _details(name, group, resource),
    )


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(group, resource)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(group, resource)} "{name}": {why}',
        _details(name, group, resource),
    )


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def invalid_object(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    joined = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    causes = [{"reason": e.reason(), "message": e.body(), "field": e.field} for e in errors]
    return ApiError(
        422,
        "Invalid",
        f'{qualified_kind(group, kind)} "{name}" is invalid: {joined}',
        _details(name, group, kind, causes=causes),
    )


def forbidden_request(group: str, resource: str, name: str, why: str) -> ApiError:
    target = qualified_resource(group, resource)
    subject = f'{target} "{name}"' if name else target
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", _details(name, group, resource))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
