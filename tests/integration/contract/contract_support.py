"""Helpers for the API contract tests (what our code relies on kube-apiserver doing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None (or False); return that.

    For what kube-apiserver and kube-controller-manager do asynchronously (namespace deletion, garbage
    collection, CRD establishment and deletion, the token authentication cache).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)
