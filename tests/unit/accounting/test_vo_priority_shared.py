"""vo_priority is set once, for EGICheckinAuthenticator; the accounting service follows it.

Without EGISpawner (no primary-VO annotation in the server state) accounting picks a
session's VO from the user's hub groups by ``Collector.vo_priority``; it must be the order
the authenticator uses for ``primary_vo``, and configuring it twice invites drift.
"""

from __future__ import annotations

import json

from traitlets.config import Config

from egi_notebooks import hubconfig
from egi_notebooks.services.accounting import DB_URL_ENV, VO_PRIORITY_ENV
from egi_notebooks.services.accounting.app import AccountingApp

ORDER = ["vo.notebooks.egi.eu", "vo.access.egi.eu"]
USER = {"name": "alice", "groups": ["vo.access.egi.eu", "vo.notebooks.egi.eu"]}
SERVER: dict = {"name": "", "state": {}, "user_options": {}}


def accounting_service(c: Config, **kw) -> dict:
    hubconfig.add_accounting_service(c, db_url="sqlite://", **kw)
    return c.JupyterHub.services[-1]


def started_collector(service: dict, monkeypatch, tmp_path, *extra: str):
    """The Collector of an AccountingApp started with the service's command and environment."""
    monkeypatch.delenv(VO_PRIORITY_ENV, raising=False)
    for key, value in service.get("environment", {}).items():
        monkeypatch.setenv(key, value)
    argv = service["command"][service["command"].index("accounting") + 1 :]
    argv = [a if not a.startswith("--db-url=") else f"--db-url=sqlite:///{tmp_path / 'a.db'}"
            for a in argv]  # fmt: skip
    AccountingApp.clear_instance()
    app = AccountingApp()
    app.initialize([*argv, "--AccountingApp.serve_web=False", *extra])
    app.engine.dispose()
    AccountingApp.clear_instance()
    return app.collector


def test_accounting_follows_the_authenticators_vo_priority(monkeypatch, tmp_path):
    c = Config()
    c.EGICheckinAuthenticator.vo_priority = ORDER
    service = accounting_service(c)
    assert json.loads(service["environment"][VO_PRIORITY_ENV]) == ORDER
    collector = started_collector(service, monkeypatch, tmp_path)
    assert collector.vo_priority == ORDER
    assert collector.primary_vo_of(USER, SERVER) == "vo.notebooks.egi.eu"


def test_the_collectors_own_setting_still_wins(monkeypatch, tmp_path):
    c = Config()
    c.EGICheckinAuthenticator.vo_priority = ORDER
    service = accounting_service(c, args=["--Collector.vo_priority=vo.access.egi.eu"])
    collector = started_collector(service, monkeypatch, tmp_path)
    assert collector.vo_priority == ["vo.access.egi.eu"]
    config_file = tmp_path / "accounting_config.py"
    config_file.write_text("c.Collector.vo_priority = ['vo.other.eu']\n")
    collector = started_collector(
        accounting_service(c), monkeypatch, tmp_path, f"--config={config_file}"
    )
    assert collector.vo_priority == ["vo.other.eu"]


def test_nothing_set_nothing_forwarded(monkeypatch, tmp_path):
    service = accounting_service(Config(), environment={"OTHER": "1"})
    # the operator's own variable and the database URL, but no VO priority
    assert service["environment"] == {"OTHER": "1", DB_URL_ENV: "sqlite://"}
    assert started_collector(service, monkeypatch, tmp_path).vo_priority == []


def test_a_bad_value_in_the_environment_is_ignored_with_a_warning(monkeypatch, tmp_path, capfd):
    service = accounting_service(Config(), environment={VO_PRIORITY_ENV: "not json"})
    assert started_collector(service, monkeypatch, tmp_path).vo_priority == []
    # the service's log goes to its stderr (the hub's log in z2jh)
    assert f"Ignoring ${VO_PRIORITY_ENV}" in capfd.readouterr().err


def test_the_database_url_is_never_on_the_command_line(monkeypatch, tmp_path):
    # the hub logs a service's command line and shows it in the services API
    secret_url = "postgresql+psycopg2://accounting:s3cret@db/accounting"
    c = Config()
    hubconfig.add_accounting_service(c, db_url=secret_url)
    service = c.JupyterHub.services[-1]
    assert not any("s3cret" in arg for arg in service["command"])
    monkeypatch.setenv(DB_URL_ENV, service["environment"][DB_URL_ENV])
    AccountingApp.clear_instance()
    assert AccountingApp().db_url == secret_url
