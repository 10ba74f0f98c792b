"""Status conditions (``metav1.Condition``) on Services and pools: build, compare, merge. Pure.

Only the condition types we own are touched; other controllers' conditions on the same object are
kept as they are. ``lastTransitionTime`` changes only when the status flips, and a condition whose
status, reason and message are unchanged is not rewritten: no write when nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# Service conditions.
IP_ALLOCATED = "l2lb.io/IPAllocated"
ANNOUNCED = "l2lb.io/Announced"
SERVICE_CONDITIONS = (IP_ALLOCATED, ANNOUNCED)
# Pool conditions.
CONFLICTING = "Conflicting"
EXHAUSTED = "Exhausted"
INVALID = "Invalid"
POOL_CONDITIONS = (CONFLICTING, EXHAUSTED, INVALID)

MAX_MESSAGE = 1024  # the API's limit is 32768; long lists are cut for readability


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" / "False" / "Unknown"
    reason: str
    message: str

    def same_as(self, raw: Mapping[str, Any] | None) -> bool:
        return raw is not None and (
            str(raw.get("status")),
            str(raw.get("reason") or ""),
            str(raw.get("message") or ""),
        ) == (self.status, self.reason, _cut(self.message))


def now_time() -> str:
    """metav1.Time: RFC 3339, second precision, UTC."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for raw in conditions or ():
        if isinstance(raw, Mapping) and raw.get("type") == type_:
            return raw
    return None


def merge(
    current: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[Condition],
    owned: Iterable[str],
    now: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The full condition list to write and whether it differs from ``current``.

    Conditions of types in ``owned`` but not in ``desired`` are removed; others are kept untouched.
    """
    owned_set = set(owned)
    wanted = {c.type: c for c in desired}
    stamp = now or now_time()
    result: list[dict[str, Any]] = []
    changed = False
    seen: set[str] = set()
    for raw in current or ():
        if not isinstance(raw, Mapping):
            changed = True
            continue
        type_ = str(raw.get("type") or "")
        if type_ not in owned_set:
            result.append(dict(raw))
            continue
        cond = wanted.get(type_)
        if cond is None or type_ in seen:
            changed = True  # ours, no longer wanted (or a duplicate)
            continue
        seen.add(type_)
        if cond.same_as(raw):
            result.append(dict(raw))
            continue
        changed = True
        transition = raw.get("lastTransitionTime") if str(raw.get("status")) == cond.status else None
        result.append(_render(cond, transition or stamp))
    for cond in desired:
        if cond.type not in seen:
            changed = True
            result.append(_render(cond, stamp))
    return result, changed


def _render(cond: Condition, transition: str) -> dict[str, Any]:
    return {
        "type": cond.type,
        "status": cond.status,
        "reason": cond.reason,
        "message": _cut(cond.message),
        "lastTransitionTime": transition,
    }


def changed_to_failure(current: Sequence[Mapping[str, Any]] | None, cond: Condition) -> bool:
    """A False condition that is new or says something new: worth one Warning Event."""
    return cond.status == "False" and not cond.same_as(find(current, cond.type))
