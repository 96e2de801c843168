"""``GET /hub/jwt_login`` end to end: real hub + CHP, the certified provider as Check-in.

A caller with a Check-in access token and no browser session gets a hub API token, starts
their server on the (emulated) Kubernetes cluster with it and reaches it through the proxy.
Tokens that must not work (expired, revoked, issued to another client, from another issuer,
an id_token, a non-member's) are refused with a JSON message. The JWT access-token path and
RFC 8693 token exchange run against the same provider configured for them.

Callers log in with tokens of their own client (``cli``, listed in ``jwt_login_audiences``):
the hub's own client's tokens are what it hands to every notebook, and are refused.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import jwt
import pytest

from egi_notebooks.demo.accounts import CLIENT_ID
from tests.harness.egi_hub import EGIHub, kube_spawner_config, on_cluster
from tests.harness.hub import LOCAL_SPAWNER_CONFIG
from tests.harness.login import login
from tests.harness.provider import (  # noqa: F401 (provider_factory is a fixture)
    CERTIFIED,
    ProviderProcess,
    make_provider_config,
    pkce_pair,
    provider_factory,
)
from tests.harness.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

NS = "egi"
SCOPE = "openid profile email offline_access eduperson_entitlement voperson_id"
# a command-line client of the same provider (a user's token tool), and one the hub does
# not accept tokens of
CLI = {"client_id": "cli", "redirect_uris": ["http://127.0.0.1:9/cli"]}
OTHER = {"client_id": "other-service", "redirect_uris": ["http://127.0.0.1:9/other"]}
# the command-line client's tokens log in; the hub ends a hub token within 2 s of its bearer
# token's revocation at the provider, and at once at a logout that revokes
JWT_LOGIN_CONFIG = f"""
c.EGICheckinAuthenticator.jwt_login_audiences = [{CLIENT_ID!r}, "cli"]
c.EGICheckinAuthenticator.jwt_login_check_interval = 2
c.EGICheckinAuthenticator.revoke_on_logout = "always"
"""
KUBE_CONFIG = kube_spawner_config(NS) + JWT_LOGIN_CONFIG


def with_clients(egi: EGIHub, *clients: dict) -> EGIHub:
    """``egi`` with further clients at its provider (each with a random secret)."""
    hub_client = make_provider_config(
        f"{egi.hub.url}/hub/oauth_callback", f"{egi.hub.url}/hub/login"
    )["clients"][0]
    extra = [{**c, "client_secret": secrets.token_urlsafe(16)} for c in clients]
    egi.provider_settings["clients"] = [hub_client, *extra]
    return egi


@contextlib.contextmanager
def kube_hub(
    workdir: Path, extra: str = "", hub_client_auth: str | None = None, **provider_settings
) -> Iterator[EGIHub]:
    """A hub on the emulated cluster; ``hub_client_auth``: how the provider registers the
    hub's client (``token_endpoint_auth_method``; default HTTP Basic)."""
    egi = with_clients(
        EGIHub(workdir / "hub", KUBE_CONFIG + extra, CERTIFIED, **provider_settings),
        CLI,
        OTHER,
    )
    if hub_client_auth:
        egi.provider_settings["clients"][0]["token_endpoint_auth_method"] = hub_client_auth
    with on_cluster(egi, workdir / "k8s"):
        yield egi


@pytest.fixture(scope="module")
def egi(tmp_path_factory):
    with kube_hub(tmp_path_factory.mktemp("jwt-login")) as hub:
        yield hub


def client_of(provider: ProviderProcess, client_id: str) -> dict:
    return next(c for c in provider.config["clients"] if c["client_id"] == client_id)


def tokens_for(
    provider: ProviderProcess,
    login: str,
    client_id: str = CLI["client_id"],
    resource: str | None = None,
    scope: str = SCOPE,
) -> dict:
    """A token response of ``client_id`` for ``login`` (code flow with PKCE, as a CLI does)."""
    client = client_of(provider, client_id)
    verifier, challenge = pkce_pair()
    extra = {"resource": resource} if resource else {}
    code = provider.get_code(
        login,
        client_id=client_id,
        redirect_uri=client["redirect_uris"][0],
        scope=scope,
        code_challenge=challenge,
        code_challenge_method="S256",
        **extra,
    )
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client["redirect_uris"][0],
        "code_verifier": verifier,
        **extra,
    }
    r = provider.http.post(provider.endpoint("token"), **provider.client_auth(form, client_id))
    r.raise_for_status()
    return r.json()


def revoke_at_provider(egi: EGIHub, token: str, client_id: str = CLI["client_id"]) -> None:
    """Revoke ``token`` as its client would (RFC 7009), and see that the provider did."""
    form = {"token": token, "token_type_hint": "access_token"}
    r = egi.provider.http.post(
        egi.provider.endpoint("revocation"), **egi.provider.client_auth(form, client_id)
    )
    assert r.status_code == 200, r.text
    assert egi.provider.introspect(token)["active"] is False


def jwt_login(egi: EGIHub, bearer: str | None, scheme: str = "Bearer") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {bearer}"} if bearer else {}
    return httpx.get(f"{egi.hub.url}/hub/jwt_login", headers=headers, timeout=60)


def refused(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    message = r.json()["message"]
    assert words.lower() in message.lower(), message


def jwt_login_tokens(egi: EGIHub, user: str) -> list[dict]:
    r = egi.hub.api("GET", f"/users/{user}/tokens")
    r.raise_for_status()
    return [t for t in r.json()["api_tokens"] if t["note"].startswith("jwt_login ")]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def as_user(egi: EGIHub, token: str, method: str, path: str, **kw) -> httpx.Response:
    return egi.hub.api(method, path, token=token, **kw)


# ----- the opaque access tokens Check-in issues ------------------------------------------


def test_bearer_token_starts_and_reaches_the_users_server(egi):
    user = "alice@egi.eu"
    assert egi.hub.api("GET", f"/users/{user}").status_code == 404  # never logged in
    access = tokens_for(egi.provider, "alice")["access_token"]
    r = jwt_login(egi, access)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    token = body["token"]
    assert body["user"]["name"] == user and body["user"]["admin"] is False
    assert access not in r.text
    # created with the access token and its expiry in auth_state, VOs as at a login
    state = egi.auth_state(user)
    assert state["access_token"] == access
    exp = egi.provider.introspect(access)["exp"]
    assert abs(state["expires_at"] - exp) <= 2
    assert state["primary_vo"] == "vo.access.egi.eu"
    assert set(state["vos"]) == {"vo.notebooks.egi.eu", "vo.access.egi.eu"}
    # the hub token lives no longer than the access token
    assert body["expires_at"] <= exp + 1
    (listed,) = jwt_login_tokens(egi, user)
    assert epoch(listed["expires_at"]) <= exp + 1
    # reused for the same access token: no second token
    again = jwt_login(egi, access)
    assert again.status_code == 200 and again.json()["token"] == token
    assert len(jwt_login_tokens(egi, user)) == 1

    # the default scopes: the user's own servers and model, nothing else
    assert as_user(egi, token, "GET", f"/users/{user}").status_code == 200
    listed_users = as_user(egi, token, "GET", "/users")
    if listed_users.status_code == 200:  # a filtered scope lists only what it may see
        assert [u["name"] for u in listed_users.json()] == [user]
    else:
        assert listed_users.status_code == 403
    assert as_user(egi, token, "GET", "/users/bob@egi.eu").status_code in (403, 404)
    assert as_user(egi, token, "POST", f"/users/{user}/tokens", json={}).status_code == 403
    r = as_user(egi, token, "POST", f"/users/{user}/server")
    assert r.status_code in (201, 202), r.text
    egi.hub.wait_for_server(user, timeout=120)
    reached = httpx.get(
        f"{egi.hub.url}/user/{user}/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert reached.status_code == 200, reached.text
    assert "started" in reached.json()
    r = as_user(egi, token, "DELETE", f"/users/{user}/server")
    assert r.status_code in (202, 204), r.text
    egi.hub.wait_for_server(user, ready=False, timeout=120)
    # the bearer token never reaches the hub's log
    assert access not in egi.hub.log()


def test_a_client_secret_post_hub_introspects_exchanges_and_revokes(tmp_path):
    """The provider registers the hub's client with ``client_secret_post`` (credentials in
    the form; it refuses HTTP Basic): every call the hub makes authenticates that way."""
    extra = (
        'c.EGICheckinAuthenticator.token_endpoint_auth_method = "client_secret_post"\n'
        "c.EGICheckinAuthenticator.token_exchange_enabled = True\n"
    )
    with kube_hub(tmp_path, extra, "client_secret_post", token_exchange=True) as egi:
        user = "alice@egi.eu"
        # a bearer token: introspection, then token exchange for the hub's own tokens
        access = tokens_for(egi.provider, "alice")["access_token"]
        r = jwt_login(egi, access)
        assert r.status_code == 200, r.text
        exchanged = egi.auth_state(user)
        assert exchanged["refresh_token"], "token exchange gave no refresh token"
        assert egi.provider.introspect(exchanged["refresh_token"])["active"] is True
        # a browser login (the code exchange), then logout revokes at the provider
        alice = login(egi.hub.url, "alice")
        state = egi.auth_state(user)
        assert egi.provider.introspect(state["refresh_token"])["active"] is True
        assert alice.client.get(f"{egi.hub.url}/hub/logout").status_code == 302
        for key in ("refresh_token", "access_token"):
            assert egi.provider.introspect(state[key])["active"] is False, key
        assert "refused the hub's client credentials" not in egi.hub.log()
        # the secret rotated at the provider: a clear 503, and the operator is told why
        egi.provider.set_client_secret(secrets.token_urlsafe(16))
        r = jwt_login(egi, tokens_for(egi.provider, "bob")["access_token"])
        refused(r, 503, "misconfigured")
        assert "refused the hub's client credentials" in egi.hub.log()


def test_a_new_access_token_gets_a_new_hub_token(egi):
    first = jwt_login(egi, tokens_for(egi.provider, "bob")["access_token"])
    second = jwt_login(egi, tokens_for(egi.provider, "bob")["access_token"])
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["token"] != second.json()["token"]
    assert second.json()["user"]["name"] == "bob@egi.eu"
    # both still valid: each belongs to a live access token
    for r in (first, second):
        assert as_user(egi, r.json()["token"], "GET", "/users/bob@egi.eu").status_code == 200


def test_a_browser_login_keeps_its_tokens(egi):
    assert login(egi.hub.url, "admin").ok
    user = "admin@egi.eu"
    before = egi.auth_state(user)
    assert before["refresh_token"]
    r = jwt_login(egi, tokens_for(egi.provider, "admin")["access_token"])
    assert r.status_code == 200, r.text
    # admin from the manager entitlement, as at a login
    assert r.json()["user"]["admin"] is True
    after = egi.auth_state(user)
    # the hub's own tokens stay: they are refreshed and are what the notebooks get
    for key in ("access_token", "refresh_token", "id_token", "expires_at"):
        assert after[key] == before[key], key


def test_the_token_notebooks_get_does_not_log_in(egi):
    """The access token the hub delivers into notebooks (token Secret, tokens service) is its
    own client's: a notebook that passes it to another API must not hand that API a login."""
    assert login(egi.hub.url, "alice").ok
    delivered = egi.auth_state("alice@egi.eu")["access_token"]
    assert egi.provider.introspect(delivered)["client_id"] == CLIENT_ID
    refused(jwt_login(egi, delivered), 401, "issued to the hub itself")
    # any token of the hub's client, not only the stored one
    own = tokens_for(egi.provider, "alice", client_id=CLIENT_ID)["access_token"]
    refused(jwt_login(egi, own), 401, "issued to the hub itself")
    assert delivered not in egi.hub.log() and own not in egi.hub.log()


def test_a_revoked_bearer_token_ends_its_hub_token(egi):
    access = tokens_for(egi.provider, "bob")["access_token"]
    r = jwt_login(egi, access)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert as_user(egi, token, "GET", "/users/bob@egi.eu").status_code == 200
    revoke_at_provider(egi, access)
    # the hub checks every jwt_login_check_interval (2 s here)
    wait_until(
        lambda: as_user(egi, token, "GET", "/users/bob@egi.eu").status_code == 403,
        60,
        "the hub token of a revoked access token to stop working",
    )
    assert access not in egi.hub.log()


def test_logout_that_revokes_ends_the_users_jwt_login_tokens(egi):
    user = "admin@egi.eu"
    tokens = [
        jwt_login(egi, tokens_for(egi.provider, "admin")["access_token"]).json()["token"]
        for _ in range(2)
    ]
    for token in tokens:
        assert as_user(egi, token, "GET", f"/users/{user}").status_code == 200
    session = login(egi.hub.url, "admin")
    assert session.ok
    # revoke_on_logout = "always": the API logins end with the browser session, at once
    assert session.client.get(f"{egi.hub.url}/hub/logout").status_code == 302
    for token in tokens:
        assert as_user(egi, token, "GET", f"/users/{user}").status_code == 403
    assert jwt_login_tokens(egi, user) == []
    assert "jwt_login_bearers" not in egi.auth_state(user)


def test_missing_revoked_foreign_and_non_member_tokens_are_refused(egi):
    r = jwt_login(egi, None)
    refused(r, 401, "Authorization: Bearer")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    refused(jwt_login(egi, "not-a-token"), 401, "not active")
    # revoked: introspection says inactive
    tokens = tokens_for(egi.provider, "bob")
    revoke_at_provider(egi, tokens["access_token"])
    refused(jwt_login(egi, tokens["access_token"]), 401, "not active")
    # a valid token of a client whose tokens the hub does not accept
    other = tokens_for(egi.provider, "bob", client_id=OTHER["client_id"])
    refused(jwt_login(egi, other["access_token"]), 401, "not issued for this hub")
    # the id_token is signed by the provider but is no access token
    refused(jwt_login(egi, tokens["id_token"]), 401, "not an access token")
    # a member of no allowed VO: authorized as at a login, and not created
    mallory = tokens_for(egi.provider, "mallory")["access_token"]
    refused(jwt_login(egi, mallory), 403, "not allowed")
    assert egi.hub.api("GET", "/users/mallory@egi.eu").status_code == 404
    assert tokens["access_token"] not in egi.hub.log()


def test_another_issuers_token_is_refused(egi, provider_factory):  # noqa: F811
    stranger = provider_factory(implementation=CERTIFIED)
    refused(jwt_login(egi, stranger.login_tokens("alice")["access_token"]), 401, "not active")


def test_an_expired_access_token_is_refused(egi):
    egi.provider.settings(access_token_lifetime=3)
    try:
        tokens = tokens_for(egi.provider, "bob")
    finally:
        egi.provider.settings(access_token_lifetime=3600)
    wait_until(lambda: not egi.provider.introspect(tokens["access_token"])["active"], 60, "expiry")
    refused(jwt_login(egi, tokens["access_token"]), 401, "expired")


def test_hub_token_lifetime_follows_a_short_access_token(egi):
    egi.provider.settings(access_token_lifetime=120)
    try:
        short = tokens_for(egi.provider, "bob")["access_token"]
    finally:
        egi.provider.settings(access_token_lifetime=3600)
    body = jwt_login(egi, short).json()
    exp = egi.provider.introspect(short)["exp"]
    assert exp - 125 <= body["expires_at"] <= exp + 1


# ----- JWT access tokens and token exchange ------------------------------------------------


@pytest.fixture(scope="module")
def jwt_egi(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("jwt-login-jwt")
    egi = with_clients(
        EGIHub(
            workdir / "hub",
            LOCAL_SPAWNER_CONFIG
            + f"""
c.EGICheckinAuthenticator.jwt_login_audiences = [{CLIENT_ID!r}, "cli"]
c.EGICheckinAuthenticator.jwt_login_claims = "token"
c.EGICheckinAuthenticator.jwt_login_max_lifetime = 600
c.EGICheckinAuthenticator.jwt_login_scopes = ["read:users!user"]
c.EGICheckinAuthenticator.token_exchange_enabled = True
c.EGICheckinAuthenticator.background_refresh_max_interval = 2
c.EGICheckinAuthenticator.jwt_login_check_interval = 1
""",
            CERTIFIED,
            jwt_access_tokens=True,
            token_exchange=True,
            access_token_lifetime=3600,
        ),
        CLI,
        OTHER,
    )
    egi.start()
    yield egi
    egi.stop()


def resource_of(egi: EGIHub) -> str:
    return f"{egi.hub.url}/hub/"


def test_jwt_access_token_of_an_accepted_client(jwt_egi):
    egi = jwt_egi
    tokens = tokens_for(egi.provider, "alice", client_id="cli", resource=resource_of(egi))
    access = tokens["access_token"]
    assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
    r = jwt_login(egi, access)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["name"] == "alice@egi.eu"
    # jwt_login_max_lifetime caps the hub token below the access token's hour
    assert body["expires_at"] <= time.time() + 601
    state = egi.auth_state("alice@egi.eu")
    assert set(state["vos"]) == {"vo.notebooks.egi.eu", "vo.access.egi.eu"}
    # token exchange gave the hub its own tokens, a refresh token among them
    assert state["refresh_token"] and state["access_token"] != access
    assert egi.provider.introspect(state["refresh_token"])["active"] is True
    # jwt_login_scopes: reading the own model only, no servers
    assert as_user(egi, body["token"], "GET", "/users/alice@egi.eu").status_code == 200
    (listed,) = jwt_login_tokens(egi, "alice@egi.eu")
    # (the API lists the scopes expanded: read:users:name, read:users:groups...)
    assert listed["scopes"] and all(s.startswith("read:users") for s in listed["scopes"])
    assert as_user(egi, body["token"], "POST", "/users/alice@egi.eu/server").status_code == 403


def test_background_refresh_of_an_api_only_user(jwt_egi):
    egi = jwt_egi
    egi.provider.settings(access_token_lifetime=10)
    try:
        tokens = tokens_for(egi.provider, "bob", client_id="cli", resource=resource_of(egi))
        body = jwt_login(egi, tokens["access_token"]).json()
        user = "bob@egi.eu"
        before = egi.auth_state(user)
        assert before["refresh_token"]
        assert body["token"]
        r = egi.hub.api("POST", f"/users/{user}/server")
        assert r.status_code in (201, 202), r.text
        egi.hub.wait_for_server(user, timeout=120)
        # no request from the user: the background refresh renews the hub's tokens
        wait_until(
            lambda: egi.auth_state(user)["access_token"] != before["access_token"],
            90,
            "a background refresh",
        )
        after = egi.auth_state(user)
        assert after["expires_at"] > time.time()
        assert egi.provider.introspect(after["access_token"])["active"] is True
    finally:
        egi.provider.settings(access_token_lifetime=3600)
        egi.hub.api("DELETE", "/users/bob@egi.eu/server")


def test_jwt_refusals(jwt_egi, provider_factory):  # noqa: F811
    egi = jwt_egi
    other = tokens_for(
        egi.provider, "alice", client_id=OTHER["client_id"], resource=resource_of(egi)
    )
    refused(jwt_login(egi, other["access_token"]), 401, "not issued for this hub")
    stranger = provider_factory(implementation=CERTIFIED, jwt_access_tokens=True)
    foreign = tokens_for(stranger, "alice", client_id=CLIENT_ID, resource=resource_of(egi))[
        "access_token"
    ]
    refused(jwt_login(egi, foreign), 401, "not signed by a known key")
    # a tampered token: the signature no longer matches
    good = tokens_for(egi.provider, "alice", client_id="cli", resource=resource_of(egi))
    head, payload, signature = good["access_token"].split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    refused(jwt_login(egi, tampered), 401, "not valid")
    refused(jwt_login(egi, good["id_token"]), 401, "not an access token")
    # the hub's own client's JWT access token (aud and client_id: the hub's client)
    own = tokens_for(egi.provider, "alice", client_id=CLIENT_ID, resource=resource_of(egi))
    refused(jwt_login(egi, own["access_token"]), 401, "issued to the hub itself")


def test_the_checks_keep_a_jwt_the_provider_cannot_introspect(jwt_egi):
    """The certified provider neither introspects nor revokes its JWT access tokens: the
    checks (every second here) keep their hub tokens until expiry. A jwt_login-noted hub
    token whose access token the hub has no record of is ended: that shows a check ran."""
    egi = jwt_egi
    user = "admin@egi.eu"
    signed = tokens_for(egi.provider, "admin", client_id="cli", resource=resource_of(egi))
    kept = jwt_login(egi, signed["access_token"])
    assert kept.status_code == 200, kept.text
    r = egi.hub.api(
        "POST",
        f"/users/{user}/tokens",
        json={"note": "jwt_login 0123456789abcdef", "scopes": ["read:users!user"]},
    )
    assert r.status_code == 201, r.text
    unknown = r.json()["token"]
    wait_until(
        lambda: as_user(egi, unknown, "GET", f"/users/{user}").status_code == 403,
        60,
        "a check to end a hub token with no access token on record",
    )
    assert as_user(egi, kept.json()["token"], "GET", f"/users/{user}").status_code == 200


def test_token_exchange_leaves_one_live_grant(jwt_egi):
    """Each jwt_login with a new access token exchanges it for a new offline grant; the one
    it replaces is revoked at the provider, as a browser login's is."""
    egi = jwt_egi
    refresh_tokens = []
    for _ in range(4):
        tokens = tokens_for(egi.provider, "alice", client_id="cli", resource=resource_of(egi))
        r = jwt_login(egi, tokens["access_token"])
        assert r.status_code == 200, r.text
        refresh_tokens.append(egi.auth_state("alice@egi.eu")["refresh_token"])
    assert len(set(refresh_tokens)) == 4
    active = [egi.provider.introspect(t)["active"] for t in refresh_tokens]
    assert active == [False, False, False, True]
    # a user the hub refuses keeps no grant from the exchange either
    mallory = tokens_for(
        egi.provider,
        "mallory",
        client_id="cli",
        resource=resource_of(egi),
        scope=SCOPE.replace(" offline_access", ""),
    )
    assert egi.provider.token_counts("mallory")["refresh"] == 0
    refused(jwt_login(egi, mallory["access_token"]), 403, "not allowed")
    assert egi.provider.token_counts("mallory")["refresh"] == 0
