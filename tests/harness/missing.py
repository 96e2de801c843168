"""What a test does when a tool it needs is missing: under ``CI=true`` the run fails (CI must
have every tool, so a skip would hide a broken set-up), elsewhere the test is skipped with the
reason."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"


def missing(reason: str) -> NoReturn:
    print(reason)
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)
