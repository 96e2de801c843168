"""A user who loses every allowed VO loses the hub: API tokens, servers, browser sessions.

Real hub + CHP, the certified provider as EGI Check-in, real local single-user servers and
the tokens service run by the hub. Alice has a running server, a hub API token and a browser
session in her server; her VO is removed at the provider. Whichever path refreshes her next
(the background refresh, a request with her API token, the tokens service), the outcome is
the same: every hub token of hers is refused and gone, her server is stopped, the hub log
says why.
"""

from __future__ import annotations

import pytest

from tests.e2e import test_tokens_e2e
from tests.e2e.test_tokens_e2e import (
    fetch,
    server_token,
    start_server,
    user_api_token,
    wait_for_service,
)
from tests.harness.login import login
from tests.harness.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

tokens_hub = test_tokens_e2e.tokens_hub  # the fixture: a hub with add_tokens_service

ALICE = "alice@egi.eu"
OTHER_VO_ONLY = {"eduperson_entitlement": ["urn:mace:egi.eu:group:vo.other.eu:role=member"]}

# which refresh finds the loss: only one path may refresh in each case
PATHS = {
    "background": "",
    "request": (
        "c.EGICheckinAuthenticator.background_refresh = False\n"
        "c.Authenticator.auth_refresh_age = 1\n"
        "c.EGICheckinAuthenticator.refresh_leeway = 3\n"
    ),
    "tokens-service": (
        "c.EGICheckinAuthenticator.background_refresh = False\n"
        "c.Authenticator.auth_refresh_age = 0\n"  # requests never refresh
    ),
}


def as_alice(egi, token: str, method: str, path: str):
    return egi.hub.api(method, path, token=token)


def alice_tokens(egi) -> list[dict]:
    r = egi.hub.api("GET", f"/users/{ALICE}/tokens")
    assert r.status_code == 200, r.text
    return r.json()["api_tokens"]


@pytest.mark.parametrize("path", list(PATHS))
def test_losing_the_vo_ends_api_tokens_servers_and_sessions(tokens_hub, path):
    egi = tokens_hub(PATHS[path], access_token_lifetime=12)
    alice = login(egi.hub.url, "alice")
    assert alice.ok
    server = start_server(egi, ALICE)
    wait_for_service(egi)
    api_token = user_api_token(egi, ALICE)
    assert as_alice(egi, api_token, "GET", "/user").status_code == 200
    # her browser opens her server: the server's OAuth client gets a token of hers
    opened = alice.client.get(f"{egi.hub.url}/user/{ALICE}/lab", follow_redirects=True)
    assert opened.status_code == 200, opened.text[:300]
    assert str(opened.url).startswith(f"{egi.hub.url}/user/{ALICE}/lab")
    assert any(t.get("oauth_client") for t in alice_tokens(egi))
    own_server_token = server_token(server)
    assert fetch(egi, own_server_token).status_code == 200

    egi.provider.patch_claims("alice", OTHER_VO_ONLY)
    if path == "request":
        # her own API request finds the loss: that very request is refused too
        wait_until(
            lambda: as_alice(egi, api_token, "GET", "/user").status_code == 403,
            timeout=60,
            what="a request with alice's API token refused",
        )
    elif path == "tokens-service":
        wait_until(
            lambda: fetch(egi, own_server_token).status_code != 200,
            timeout=60,
            what="the tokens service refusing alice's server",
        )

    wait_until(
        lambda: not egi.user_model(ALICE)["servers"],
        timeout=60,
        what="alice's server stopped",
    )
    wait_until(lambda: not alice_tokens(egi), timeout=30, what="alice's hub tokens gone")
    assert as_alice(egi, api_token, "GET", "/user").status_code == 403
    assert as_alice(egi, api_token, "GET", f"/users/{ALICE}").status_code == 403
    assert as_alice(egi, api_token, "POST", f"/users/{ALICE}/server").status_code == 403
    assert not egi.user_model(ALICE)["servers"]
    assert fetch(egi, own_server_token).status_code == 403
    # her browser: the hub sends it to log in, and the login is refused
    home = alice.client.get(f"{egi.hub.url}/hub/home")
    assert home.status_code == 302 and "/hub/login" in home.headers["location"]
    assert login(egi.hub.url, "alice", client=alice.client).response.status_code == 403
    log = egi.hub.log()
    assert f"{ALICE} lost authorization" in log
    assert api_token not in log and own_server_token not in log
