"""Fresh access tokens inside running notebooks, end to end.

Real hub + CHP, real OIDC provider, real local single-user servers, the tokens service run
by the hub. The soak test polls for ``EGI_TOKENS_SOAK_SECONDS`` (default 300, as the issue
asks) with a 30 s access-token lifetime and no user traffic.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.hub import LOCAL_SPAWNER_CONFIG, free_port
from tests.harness.login import login

# the certified provider, as EGI Check-in
pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

SOAK_SECONDS = float(os.environ.get("EGI_TOKENS_SOAK_SECONDS", "300"))


def tokens_config(port: int, extra: str = "") -> str:
    return (
        LOCAL_SPAWNER_CONFIG
        + f"""
from egi_notebooks.hubconfig import add_tokens_service
add_tokens_service(c, url="http://127.0.0.1:{port}")
c.JupyterHub.allow_named_servers = True
c.EGICheckinAuthenticator.background_refresh_max_interval = 5
"""
        + extra
    )


@pytest.fixture
def tokens_hub(egi_hub_factory):
    """Servers are stopped by the hub at shutdown (cleanup_servers) unless a test says not."""

    def start(extra: str = "", **provider_settings):
        egi = egi_hub_factory(tokens_config(free_port(), extra), **provider_settings)
        egi.service_url = f"{egi.hub.url}/services/tokens/token"
        return egi

    return start


def start_server(egi, user: str, name: str = "") -> dict:
    path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
    r = egi.hub.api("POST", path)
    assert r.status_code in (201, 202), r.text
    return egi.hub.wait_for_server(user, name)


def server_token(server: dict) -> str:
    """The API token JupyterHub gave the running server (read from its environment)."""
    environ = Path(f"/proc/{server['state']['pid']}/environ").read_bytes().split(b"\0")
    for item in environ:
        if item.startswith(b"JUPYTERHUB_API_TOKEN="):
            return item.split(b"=", 1)[1].decode()
    raise AssertionError("no JUPYTERHUB_API_TOKEN in the server's environment")


def fetch(egi, token: str | None, **params) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.get(egi.service_url, headers=headers, params=params, timeout=30)


def wait_for_service(egi, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch(egi, None).status_code == 401:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"tokens service not up:\n{egi.hub.log_tail()}")


def user_api_token(egi, user: str, scopes: list[str] | None = None) -> str:
    body = {"note": "test"} if scopes is None else {"note": "test", "scopes": scopes}
    r = egi.hub.api("POST", f"/users/{user}/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def own_api_token(egi, browser, user: str, scopes: list[str]) -> str:
    """A token ``user`` makes in their logged-in ``browser`` (a LoginResult), as on the hub's
    token page: tokens that others mint for a user never reach the tokens service."""
    assert browser.client.get(f"{egi.hub.url}/hub/home").status_code == 200  # the _xsrf cookie
    xsrf = [c.value for c in browser.client.cookies.jar if c.name == "_xsrf"][-1]
    r = browser.client.post(
        f"{egi.hub.hub_api_url}/users/{user}/tokens",
        json={"note": "test", "scopes": scopes},
        headers={"X-XSRFToken": xsrf},
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def refresh_grants(egi) -> int:
    return egi.provider.stats()["token"].get("refresh_token", 0)


def test_idle_named_servers_never_see_an_expired_token(tokens_hub):
    egi = tokens_hub(access_token_lifetime=30)
    assert login(egi.hub.url, "alice").ok
    servers = {name: start_server(egi, "alice@egi.eu", name) for name in ("a", "b")}
    tokens = {name: server_token(s) for name, s in servers.items()}
    wait_for_service(egi)
    egi.provider.reset_stats()
    seen: dict[str, list[str]] = {"a": [], "b": []}
    started = time.time()
    while time.time() - started < SOAK_SECONDS:
        for name, token in tokens.items():
            r = fetch(egi, token)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["expires_at"] > time.time(), "expired token handed out"
            if not seen[name] or seen[name][-1] != body["access_token"]:
                seen[name].append(body["access_token"])
        # the token the servers get is live at the provider, not just "not yet expired"
        assert egi.provider.introspect(seen["a"][-1])["active"] is True
        time.sleep(1)
    elapsed = time.time() - started
    grants = refresh_grants(egi)
    # effective leeway = half the 30 s lifetime: one grant every 15 s
    expected = elapsed / 15
    assert expected - 2 <= grants <= expected + 2, (grants, expected)
    assert egi.provider.stats()["invalid_grant"] == 0
    # both named servers saw every new token, in the same order
    assert seen["a"] == seen["b"] and len(seen["a"]) >= grants - 1
    assert "refresh_token" not in egi.hub.log().lower().replace("refresh_token grant", "")


def test_token_service_answers_only_the_owner(tokens_hub):
    egi = tokens_hub()
    alice = login(egi.hub.url, "alice")
    assert alice.ok and login(egi.hub.url, "bob").ok
    server = start_server(egi, "alice@egi.eu")
    wait_for_service(egi)
    alice_state = egi.auth_state("alice@egi.eu")
    r = fetch(egi, server_token(server))
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert set(r.json()) == {"access_token", "expires_at"}
    assert r.json()["access_token"] == alice_state["access_token"]
    assert alice_state["refresh_token"] not in r.text
    # the owner's own API token with the dedicated scope
    scoped = own_api_token(
        egi, alice, "alice@egi.eu", ["custom:egi-notebooks:token!user=alice@egi.eu"]
    )
    assert fetch(egi, scoped).json()["access_token"] == alice_state["access_token"]
    # a token without the scope
    unscoped = user_api_token(egi, "alice@egi.eu", ["read:users:name!user=alice@egi.eu"])
    assert fetch(egi, unscoped).status_code == 403
    # another user asking for alice's token
    bob = user_api_token(egi, "bob@egi.eu")
    assert fetch(egi, bob, user="alice@egi.eu").status_code == 403
    assert alice_state["access_token"] not in fetch(egi, bob).text
    # bob reaching alice's server through JupyterHub sharing
    share = egi.hub.api("POST", "/shares/alice@egi.eu/", json={"user": "bob@egi.eu"})
    assert share.status_code in (200, 201), share.text
    shared = user_api_token(egi, "bob@egi.eu", ["access:servers!server=alice@egi.eu/"])
    refused = fetch(egi, shared)
    assert refused.status_code == 403 and alice_state["access_token"] not in refused.text
    # no token, a garbage token, a token in the URL
    assert fetch(egi, None).status_code == 401
    assert fetch(egi, "garbage").status_code == 403
    in_url = httpx.get(egi.service_url, params={"token": server_token(server)}, timeout=30)
    assert in_url.status_code == 400


def test_refresh_stops_with_the_server_and_resumes_after_hub_restart(tokens_hub):
    egi = tokens_hub("c.JupyterHub.cleanup_servers = False\n", access_token_lifetime=12)
    assert login(egi.hub.url, "alice").ok
    server = start_server(egi, "alice@egi.eu")
    pid = server["state"]["pid"]
    try:
        egi.provider.reset_stats()
        egi.hub.restart()
        wait_for_service(egi)
        time.sleep(14)  # past the lifetime of the token issued before the restart
        assert refresh_grants(egi) >= 1
        r = fetch(egi, server_token(server))
        assert r.status_code == 200 and r.json()["expires_at"] > time.time()
        assert egi.hub.api("DELETE", "/users/alice@egi.eu/server").status_code in (202, 204)
        egi.hub.wait_for_server("alice@egi.eu", ready=False)
        time.sleep(1)
        egi.provider.reset_stats()
        time.sleep(14)
        assert refresh_grants(egi) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_background_refresh_demotes_an_admin_through_the_admin_role(tokens_hub):
    # no request from the user: only the background refresh sees the lost manager role
    egi = tokens_hub(access_token_lifetime=12)
    assert login(egi.hub.url, "admin").ok
    start_server(egi, "admin@egi.eu")
    model = egi.hub.api("GET", "/users/admin@egi.eu").json()
    assert model["admin"] is True and "admin" in model["roles"]
    member = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
    egi.provider.patch_claims("admin", {"eduperson_entitlement": [member]})
    deadline = time.monotonic() + 40
    while egi.auth_state("admin@egi.eu")["entitlements"] != [member]:
        assert time.monotonic() < deadline, "no background refresh"
        time.sleep(0.3)
    model = egi.hub.api("GET", "/users/admin@egi.eu").json()
    assert model["admin"] is False and "admin" not in model["roles"]
    assert model["groups"] == ["vo.notebooks.egi.eu"]
    assert egi.auth_state("admin@egi.eu")["refresh_token"]  # still a member: still served


@pytest.mark.parametrize("left_out", [True, False], ids=["claim-left-out", "claim-empty"])
def test_last_vo_lost_ends_access_within_one_refresh(tokens_hub, left_out):
    # Check-in leaves the entitlement claim out entirely when a user has none left; both
    # forms must end access. Entitlements only in userinfo, as on Check-in.
    egi = tokens_hub(
        access_token_lifetime=12, userinfo_only_claims=["eduperson_entitlement", "voperson_id"]
    )
    alice = login(egi.hub.url, "alice")
    assert alice.ok
    server = start_server(egi, "alice@egi.eu")
    wait_for_service(egi)
    before = egi.auth_state("alice@egi.eu")
    own_server_token = server_token(server)  # read while the server runs
    assert fetch(egi, own_server_token).status_code == 200
    egi.provider.patch_claims("alice", {"eduperson_entitlement": None if left_out else []})
    deadline = time.monotonic() + 40  # one refresh: half the 12 s lifetime, plus slack
    while egi.auth_state("alice@egi.eu").get("refresh_token"):
        assert time.monotonic() < deadline, "the user kept their tokens after losing every VO"
        time.sleep(0.3)
    model = egi.hub.api("GET", "/users/alice@egi.eu").json()
    state = model["auth_state"]
    assert not state.get("access_token") and state["vos"] == [] and state["entitlements"] == []
    assert model["groups"] == []
    for key in ("access_token", "refresh_token"):
        assert egi.provider.introspect(before[key])["active"] is False
    # the server's hub token was revoked with the others, before the provider's tokens
    assert fetch(egi, own_server_token).status_code == 403
    home = alice.client.get(f"{egi.hub.url}/hub/home")
    assert home.status_code == 302 and "/hub/login" in home.headers["location"]
    assert login(egi.hub.url, "alice", client=alice.client).response.status_code == 403
    # background refresh stopped: nothing in a whole token lifetime
    egi.provider.reset_stats()
    time.sleep(13)
    assert refresh_grants(egi) == 0


def test_logout_delete_and_vo_loss_revoke_tokens(tokens_hub):
    egi = tokens_hub("c.JupyterHub.shutdown_on_logout = True\n", access_token_lifetime=12)
    alice = login(egi.hub.url, "alice")
    assert login(egi.hub.url, "bob").ok and login(egi.hub.url, "admin").ok
    start_server(egi, "alice@egi.eu")
    admin_server_token = server_token(start_server(egi, "admin@egi.eu"))
    wait_for_service(egi)
    # logout with shutdown_on_logout: servers stop, tokens revoked
    alice_state = egi.auth_state("alice@egi.eu")
    alice.client.get(f"{egi.hub.url}/hub/logout")
    for key in ("access_token", "refresh_token"):
        assert egi.provider.introspect(alice_state[key])["active"] is False
    # user deletion
    bob_state = egi.auth_state("bob@egi.eu")
    assert egi.hub.api("DELETE", "/users/bob@egi.eu").status_code == 204
    assert egi.provider.introspect(bob_state["refresh_token"])["active"] is False
    # VO loss while a server runs: the next background refresh revokes and stops
    egi.provider.patch_claims(
        "admin", {"eduperson_entitlement": ["urn:mace:egi.eu:group:vo.other.eu:role=member"]}
    )
    deadline = time.time() + 20
    while time.time() < deadline and egi.auth_state("admin@egi.eu").get("refresh_token"):
        time.sleep(0.5)
    state = egi.auth_state("admin@egi.eu")
    assert not state.get("refresh_token") and not state.get("access_token")
    assert fetch(egi, admin_server_token).status_code == 403  # revoked: VO lost
    egi.provider.reset_stats()
    time.sleep(13)
    assert refresh_grants(egi) == 0
