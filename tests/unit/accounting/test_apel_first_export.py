"""The first APEL export happens at the first cycle, however recently the host booted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from egi_notebooks.services.accounting import app as app_module
from egi_notebooks.services.accounting.app import AccountingApp
from egi_notebooks.services.accounting.store import Store

from .test_apel import all_records
from .test_store import T0, obs


def accounting_app(tmp_path, *args: str) -> AccountingApp:
    AccountingApp.clear_instance()
    app = AccountingApp()
    app.initialize(
        [
            f"--db-url=sqlite:///{tmp_path / 'accounting.sqlite'}",
            f"--spool-dir={tmp_path / 'q'}",
            "--ApelRenderer.site_name=EGI-NOTEBOOKS-TEST",
            "--AccountingApp.serve_web=False",
            *args,
        ]
    )
    return app


async def no_poll(hub, store) -> None:
    return None


def test_first_cycle_exports_even_right_after_boot(tmp_path, monkeypatch):
    # time.monotonic() counts from boot on Linux: 5 s after boot is < apel_interval (3600 s).
    clock = SimpleNamespace(now=5.0)
    monkeypatch.setattr(app_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    app = accounting_app(tmp_path)
    try:
        monkeypatch.setattr(app.collector, "poll", no_poll)
        Store(app.sessions).apply_poll([obs()], T0 + 60)
        asyncio.run(app.cycle(None))
        assert len(all_records(tmp_path / "q")) == 1
        # ... and then only every apel_interval
        Store(app.sessions).apply_poll([obs("bob")], T0 + 120)
        clock.now += 60
        asyncio.run(app.cycle(None))
        assert len(all_records(tmp_path / "q")) == 1
        clock.now += app.apel_interval
        asyncio.run(app.cycle(None))
        assert len(all_records(tmp_path / "q")) == 2
    finally:
        app.engine.dispose()
        AccountingApp.clear_instance()
