"""The tokens service refuses what only looks like a server token, forgets revoked tokens at
once, and neither hammers a failing provider nor hands out a token about to expire.

Real hub + CHP, the real local OIDC provider, real local single-user servers and the tokens
service run by the hub, configured with ``add_tokens_service`` as operators do.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from egi_notebooks.services.tokens import TOKEN_SCOPE
from tests.e2e import test_tokens_e2e
from tests.e2e.test_tokens_e2e import (
    fetch,
    own_api_token,
    server_token,
    start_server,
    user_api_token,
    wait_for_service,
)
from tests.harness.login import login

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

tokens_hub = test_tokens_e2e.tokens_hub  # the fixture: a hub with add_tokens_service

ALICE = "alice@egi.eu"


def token_id(egi, token: str) -> str:
    r = egi.hub.api("GET", "/user", token=token)
    assert r.status_code == 200, r.text
    return r.json()["token_id"]


def wait_for_status(egi, token: str, status: int, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        r = fetch(egi, token)
        if r.status_code == status:
            return r
        assert time.monotonic() < deadline, (r.status_code, r.text)
        time.sleep(0.3)


def test_only_a_servers_own_token_counts_as_a_server_token(tokens_hub):
    egi = tokens_hub("c.JupyterHub.cleanup_servers = False\n")
    assert login(egi.hub.url, "alice").ok
    server = start_server(egi, ALICE)
    pid = server["state"]["pid"]
    try:
        wait_for_service(egi)
        current = egi.auth_state(ALICE)["access_token"]
        assert fetch(egi, server_token(server)).json()["access_token"] == current
        # tokens alice mints herself with her server's access scope, for a server that does
        # not exist and for the one that runs: neither is a token the hub gave a server
        minter = user_api_token(
            egi, ALICE, [f"tokens!user={ALICE}", f"access:servers!user={ALICE}"]
        )
        for scope in (
            f"access:servers!server={ALICE}/nonexistent",
            f"access:servers!server={ALICE}/",
        ):
            r = egi.hub.api(
                "POST", f"/users/{ALICE}/tokens", token=minter, json={"scopes": [scope]}
            )
            assert r.status_code == 201, r.text
            refused = fetch(egi, r.json()["token"])
            assert refused.status_code == 403, (scope, refused.text)
            assert current not in refused.text
        # one an admin mints for alice
        minted = user_api_token(egi, ALICE, [f"access:servers!server={ALICE}/"])
        refused = fetch(egi, minted)
        assert refused.status_code == 403 and current not in refused.text
        # the server's own token still counts after a hub restart, when the hub no longer
        # holds the servers' tokens in memory
        egi.hub.restart()
        wait_for_service(egi)
        r = fetch(egi, server_token(server))
        assert r.status_code == 200, r.text
        assert r.json()["access_token"] == egi.auth_state(ALICE)["access_token"]
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_revoked_token_is_refused_on_the_next_call(tokens_hub):
    egi = tokens_hub()
    alice = login(egi.hub.url, "alice")
    assert alice.ok
    server = start_server(egi, ALICE)
    wait_for_service(egi)
    scoped = own_api_token(egi, alice, ALICE, [f"{TOKEN_SCOPE}!user={ALICE}"])
    for token in (scoped, server_token(server)):
        assert fetch(egi, token).status_code == 200  # the service now knows the caller
        revoked = egi.hub.api("DELETE", f"/users/{ALICE}/tokens/{token_id(egi, token)}")
        assert revoked.status_code == 204, revoked.text
        refused = fetch(egi, token)
        assert refused.status_code == 403, refused.text
        assert egi.auth_state(ALICE)["access_token"] not in refused.text


@pytest.mark.provider("ours")  # fault injection: the token endpoint answers HTML 500
@pytest.mark.parametrize("background_refresh", [True, False])
def test_a_failing_provider_is_asked_once_per_backoff_not_once_per_call(
    tokens_hub, background_refresh
):
    egi = tokens_hub(
        "c.EGICheckinAuthenticator.background_refresh_max_backoff = 600\n"
        f"c.EGICheckinAuthenticator.background_refresh = {background_refresh}\n",
        access_token_lifetime=6,
    )
    assert login(egi.hub.url, "alice").ok
    token = server_token(start_server(egi, ALICE))
    wait_for_service(egi)
    assert fetch(egi, token).status_code == 200
    egi.provider.set_fault("html500", endpoints=["token"])
    wait_for_status(egi, token, 404)  # the access token expired while refreshes failed
    before = egi.provider.stats()["faulted"]
    for _ in range(20):
        assert fetch(egi, token).status_code == 404
    attempts = egi.provider.stats()["faulted"] - before
    # the authenticator's per-user backoff (5 s, then doubling) allows a retry or two at most,
    # with or without the background refresh
    assert attempts <= 3, attempts
    egi.provider.set_fault("none")
    r = wait_for_status(egi, token, 200)
    assert r.json()["expires_at"] > time.time()


def test_the_endpoint_refreshes_ahead_of_expiry_when_the_background_is_late(tokens_hub):
    # with no background refresh every refresh is the endpoint's own: the late case
    egi = tokens_hub(
        "c.EGICheckinAuthenticator.background_refresh = False\n", access_token_lifetime=8
    )
    assert login(egi.hub.url, "alice").ok
    token = server_token(start_server(egi, ALICE))
    wait_for_service(egi)
    seen = set()
    started = time.monotonic()
    while time.monotonic() - started < 20 or len(seen) < 3:
        assert time.monotonic() - started < 120, seen
        r = fetch(egi, token)
        assert r.status_code == 200, r.text
        body = r.json()
        left = body["expires_at"] - time.time()
        # effective leeway is half the 8 s lifetime: a token handed out has about 4 s left
        assert left >= 1, f"handed out a token with {left:.2f} s left"
        seen.add(body["access_token"])
        time.sleep(0.2)
