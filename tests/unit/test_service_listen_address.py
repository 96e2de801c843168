"""Where a hub-managed service listens: ``HubServiceApp.bind_url``, or derived from its URL."""

from __future__ import annotations

import pytest

from egi_notebooks.services.hub import BIND_URL_ENV, HubServiceApp


@pytest.mark.parametrize(
    ("service_url", "expected"),
    [
        ("http://127.0.0.1:10101", ("127.0.0.1", 10101)),
        ("http://127.3.4.5:10101/", ("127.3.4.5", 10101)),
        ("http://localhost:10102", ("localhost", 10102)),
        ("http://[::1]:10103", ("::1", 10103)),
        # z2jh: "hub" is the hub Service, not an address of the hub pod
        ("http://hub:10101/", ("0.0.0.0", 10101)),
        ("http://hub.jhub.svc.cluster.local:10101", ("0.0.0.0", 10101)),
        ("http://10.255.255.1:10102", ("0.0.0.0", 10102)),
        ("http://[fd00::5]:10103", ("::", 10103)),
        ("http://hub", ("0.0.0.0", 80)),
    ],
)
def test_default_follows_the_url(service_url, expected, monkeypatch):
    monkeypatch.delenv(BIND_URL_ENV, raising=False)
    assert HubServiceApp(service_url=service_url).listen_address() == expected


@pytest.mark.parametrize(
    ("bind_url", "expected"),
    [
        ("http://127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("http://0.0.0.0", ("0.0.0.0", 10101)),
        ("10.1.2.3:9000", ("10.1.2.3", 9000)),
        ("http://[::]:9000", ("::", 9000)),
        ("http://:9000", ("0.0.0.0", 9000)),
    ],
)
def test_bind_url_wins(bind_url, expected, monkeypatch):
    monkeypatch.delenv(BIND_URL_ENV, raising=False)
    app = HubServiceApp(service_url="http://hub:10101", bind_url=bind_url)
    assert app.listen_address() == expected


def test_bind_url_from_the_environment(monkeypatch):
    monkeypatch.setenv(BIND_URL_ENV, "http://127.0.0.1:9999")
    assert HubServiceApp(service_url="http://hub:10101").listen_address() == ("127.0.0.1", 9999)


def test_invalid_bind_url_exits_2():
    app = HubServiceApp(service_url="http://hub:10101", bind_url="http://0.0.0.0:port")
    with pytest.raises(SystemExit) as exit_info:
        app.bind_sockets()
    assert exit_info.value.code == 2
