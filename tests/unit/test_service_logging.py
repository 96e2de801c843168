"""The services log as JupyterHub does and are run with ``launch_instance``, which leaves no
singleton and no rewired logger behind (a JupyterHub or a second run in the same process)."""

from __future__ import annotations

import logging

import pytest
from tornado.log import LogFormatter
from traitlets.config import Application

from egi_notebooks.services.accounting.app import AccountingApp
from egi_notebooks.services.accounting.app import main as accounting_main
from egi_notebooks.services.status.app import StatusApp
from egi_notebooks.services.status.app import main as status_main
from egi_notebooks.services.tokens.app import TokensApp


@pytest.mark.parametrize("cls", [StatusApp, TokensApp, AccountingApp])
def test_services_log_like_jupyterhub(cls):
    app = cls()
    assert app._log_formatter_cls is LogFormatter
    assert app.log_level == logging.INFO
    assert app.log_format.startswith("%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d")
    (handler,) = app.log.handlers
    assert isinstance(handler.formatter, LogFormatter)


def test_launch_writes_jupyterhub_lines_and_leaves_nothing_behind(monkeypatch, capfd):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    tornado_log = logging.getLogger("tornado")
    before = (tornado_log.parent, tornado_log.propagate, tornado_log.level)
    with pytest.raises(SystemExit) as exit_:
        status_main(["--StatusApp.api_token="])
    assert exit_.value.code == 2
    err = capfd.readouterr().err
    # "[C 2026-12-01 10:00:00.123 StatusApp app:NN] no hub API token..."
    assert "[C " in err and " StatusApp app:" in err and "no hub API token" in err
    assert (tornado_log.parent, tornado_log.propagate, tornado_log.level) == before
    assert not StatusApp.initialized() and Application._instance is None


def test_tornado_and_package_records_use_the_service_handler_while_it_runs(monkeypatch):
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    def start(self: TokensApp) -> None:
        self.log.addHandler(Capture())
        for name in ("tornado.access", "egi_notebooks.services"):
            logging.getLogger(name).info("from %s", name)

    monkeypatch.setattr(TokensApp, "start", start)
    TokensApp.launch_instance([])
    assert [(r.name, r.getMessage()) for r in captured] == [
        ("tornado.access", "from tornado.access"),
        ("egi_notebooks.services", "from egi_notebooks.services"),
    ]
    assert not TokensApp.initialized()


def test_accounting_main_clears_its_singletons(monkeypatch):
    monkeypatch.setattr(AccountingApp, "start", lambda self: None)
    monkeypatch.setattr(AccountingApp, "initialize", lambda self, argv=None: None)
    assert accounting_main([]) == 0
    assert not AccountingApp.initialized() and Application._instance is None
