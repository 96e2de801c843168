"""Debian's headless Chromium under Playwright for the browser tests: the Playwright session,
a browser context, and a checked page (a full-page screenshot, then axe-core)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .axe import AXE, serious_violations
from .browser import CHROMIUM, Screenshots, launch_chromium
from .missing import missing


def playwright_session(axe: bool = True) -> Iterator[Any]:
    """Yields Playwright's sync API; a missing Chromium, axe-core (when ``axe``) or Playwright
    fails the run under CI=true and skips elsewhere. For a module-scoped fixture."""
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is missing: `./run test` installs Debian's chromium")
    if axe and not AXE.exists():
        missing(f"{AXE} is missing: `./run test` runs npm install")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is missing: `./run test` installs the test extra")
    with sync_playwright() as playwright:
        yield playwright


@contextlib.contextmanager
def browser_context(playwright: Any, profile_dir: Path, timeout_ms: int = 30_000) -> Iterator[Any]:
    """A fresh Chromium profile in ``profile_dir``, closed after."""
    context = launch_chromium(playwright, profile_dir)
    context.set_default_timeout(timeout_ms)
    try:
        yield context
    finally:
        context.close()


def check_page(page: Any, shots: Screenshots, step: str) -> None:
    """A full-page screenshot (the footer too), then axe-core: no serious or critical
    violation."""
    shots.take(page, step, full_page=True)
    violations = serious_violations(page)
    assert not violations, f"{step}: accessibility violations:\n" + "\n".join(violations)
