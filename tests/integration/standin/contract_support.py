"""Helpers for the contract tests that run against both the stand-in and the real kube-apiserver."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

# For a test that only makes sense on the stand-in (its own request counters and failure injection):
# ``@STANDIN_ONLY`` collects it for ``[standin]`` only instead of skipping it on kube-apiserver.
STANDIN_ONLY = pytest.mark.parametrize("standin", ["standin"], indirect=True)


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None (or False); return that.

    For what a real kube-apiserver does asynchronously (namespace deletion, garbage collection, CRD
    deletion, its token cache): the stand-in usually satisfies the first call.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)
