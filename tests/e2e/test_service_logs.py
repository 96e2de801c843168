"""Secrets sent in URLs never reach the logs: a token in a service URL, the authorization
code and state of a failed login callback.

Real hub + CHP, the real local OIDC provider and the tokens service run by the hub (its
output goes to the hub's log), configured as operators do.
"""

from __future__ import annotations

import re
import secrets
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.e2e import test_tokens_e2e
from tests.e2e.test_tokens_e2e import wait_for_service
from tests.harness.login import auto_submitted, fill_login_form, follow

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

tokens_hub = test_tokens_e2e.tokens_hub  # the fixture: a hub with add_tokens_service


def wait_for_log(egi, pattern: str, count: int = 1, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = egi.hub.log()
        if len(re.findall(pattern, log)) >= count:
            return log
        assert time.monotonic() < deadline, f"{pattern!r} not logged:\n{egi.hub.log_tail()}"
        time.sleep(0.2)


def test_a_token_in_a_service_url_is_refused_and_not_logged(tokens_hub):
    egi = tokens_hub()
    wait_for_service(egi)
    value = "hubtoken" + secrets.token_hex(16)
    r = httpx.get(egi.service_url, params={"token": value}, timeout=30)
    assert r.status_code == 400 and value not in r.text
    # an unknown path of the service, and a query the handler never reads
    other = httpx.get(f"{egi.service_url}/nope", params={"token": value, "x": "1"}, timeout=30)
    assert other.status_code == 404
    log = wait_for_log(egi, r"(?m)^.*\b40[04] GET /services/tokens/token.*$", count=2)
    assert value not in log
    assert "/services/tokens/token (" in log  # the line is there, without its query


def callback_url(egi, client: httpx.Client) -> str:
    """Walk the login up to the provider's redirect back to the hub; its target URL."""
    redirects: list[str] = []
    form_page = follow(client, client.get(f"{egi.hub.url}/hub/oauth_login"), redirects)
    action, fields = fill_login_form(form_page, "alice", None)
    answer = client.post(action, data=fields)
    # the provider may resume the authorization (its own redirects) before sending us back
    for _ in range(10):
        submitted = auto_submitted(client, answer)
        if submitted is not None:
            answer = submitted
            continue
        assert answer.status_code in (302, 303), answer.text[:300]
        location = urljoin(str(answer.url), answer.headers["location"])
        if urlsplit(location).path.endswith("/hub/oauth_callback"):
            return location
        answer = client.get(location)
    raise AssertionError("no redirect back to the hub's callback")


def test_a_failed_login_callback_logs_no_code_or_state(egi_hub_factory):
    egi = egi_hub_factory()
    # a code the provider refuses, with the browser's own state (403 from the token endpoint)
    with httpx.Client(timeout=30) as browser:
        url = callback_url(egi, browser)
        query = parse_qs(urlsplit(url).query)
        state = query["state"][0]
        bogus = "bogus" + secrets.token_hex(16)
        refused = browser.get(url.replace(query["code"][0], bogus))
        assert refused.status_code == 403, refused.text[:300]
    # a real code arriving without the browser's state cookie (400 from the state check)
    with httpx.Client(timeout=30) as first, httpx.Client(timeout=30) as other:
        url = callback_url(egi, first)
        query = parse_qs(urlsplit(url).query)
        stolen_code, other_state = query["code"][0], query["state"][0]
        refused = other.get(url)
        assert refused.status_code == 400, refused.text[:300]
    log = wait_for_log(egi, r"\b40[03] GET /hub/oauth_callback", count=2)
    sent = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
    raw = [sent["code"], sent["state"]]  # as sent, percent-encoded
    for value in (bogus, state, stolen_code, other_state, *raw):
        assert value not in log, value
