"""Waiting on a condition with a generous deadline: tests hold on a busy machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 30, what: str = "condition", interval: float = 0.25
) -> T:
    """The first true value of ``predicate()``, asked every ``interval`` seconds; an
    AssertionError naming ``what`` when none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
