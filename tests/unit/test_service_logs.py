"""Every service's tornado Application logs requests without their query strings: a token a
caller put into a URL never reaches the log (access lines and error lines alike)."""

from __future__ import annotations

import logging
import secrets
from types import SimpleNamespace

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from egi_notebooks.services.accounting.web import make_app as accounting_app
from egi_notebooks.services.hub import log_request, strip_query_strings
from egi_notebooks.services.status.web import make_web_app as status_app
from egi_notebooks.services.tokens.app import TokensApp


def service(prefix: str = "/services/x/") -> SimpleNamespace:
    return SimpleNamespace(
        service_prefix=prefix, hub_api_url="http://127.0.0.1:1/hub/api", api_token="t"
    )


def test_query_strings_are_cut_from_paths_in_any_message():
    assert (
        strip_query_strings("400 GET /a/b?token=s3cret (1.2.3.4): no")
        == "400 GET /a/b (1.2.3.4): no"
    )
    assert strip_query_strings("uri='/x?code=c&state=s', v") == "uri='/x', v"
    assert strip_query_strings("is it set? yes") == "is it set? yes"


def test_every_service_application_uses_the_query_free_access_log():
    tokens = TokensApp()
    tokens.service_prefix = "/services/tokens/"
    for app in (status_app(service()), accounting_app(service()), tokens.make_web_app()):
        assert app.settings["log_function"] is log_request


async def test_a_token_in_the_url_is_in_neither_access_nor_error_lines(caplog):
    app = status_app(service())
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    value = secrets.token_hex(16)
    client = AsyncHTTPClient(force_instance=True)
    caplog.set_level(logging.DEBUG)
    try:
        base = f"http://127.0.0.1:{port}/services/x/"
        # refused in the handler (an HTTPError: tornado's error line) and an unknown path
        run = await client.fetch(
            f"{base}run?token={value}", method="POST", body=b"", raise_error=False
        )
        missing = await client.fetch(f"{base}nope?token={value}", raise_error=False)
    finally:
        client.close()
        server.stop()
    assert run.code == 403 and missing.code == 404
    assert "POST /services/x/run" in caplog.text and "/services/x/nope" in caplog.text
    assert value not in caplog.text
