"""EGICheckinAuthenticator end to end: real JupyterHub + CHP, real OIDC provider process."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from egi_notebooks.demo.accounts import demo_users, entitlement
from tests.harness.login import login, sign_out_at_provider
from tests.harness.waiting import wait_until

# the certified provider (as EGI Check-in) unless a test needs fault injection
pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

# Short tokens and an eager hub: refresh becomes due within seconds.
FAST_REFRESH = """
c.Authenticator.auth_refresh_age = 1
c.EGICheckinAuthenticator.refresh_leeway = 3
"""


def user_token(egi, name: str) -> str:
    r = egi.hub.api("POST", f"/users/{name}/tokens", json={"note": "test", "expires_in": 3600})
    r.raise_for_status()
    return r.json()["token"]


def sleep_into_refresh_window(egi, name: str, leeway: float = 3) -> None:
    """Until the stored token is due for refresh (``refresh_leeway`` = 3 s) but still valid."""
    expires_at = egi.auth_state(name)["expires_at"]
    time.sleep(max(0.0, expires_at - leeway + 0.7 - time.time()))
    assert time.time() < expires_at - 0.5, "machine too slow: token nearly expired"


def test_vo_member_logs_in_with_tokens_vos_and_primary_vo(egi_hub_factory):
    egi = egi_hub_factory()
    result = login(egi.hub.url, "alice")
    assert result.ok, result.response.text[:500]
    # the real redirect chain: hub -> provider form -> hub callback
    assert any(egi.provider.issuer in url for url in result.redirects)
    assert result.redirects[-1].startswith(f"{egi.hub.url}/hub/oauth_callback")
    model = egi.user_model("alice@egi.eu")
    assert model["admin"] is False
    assert sorted(model["groups"]) == ["vo.access.egi.eu", "vo.notebooks.egi.eu"]
    state = model["auth_state"]
    assert state["access_token"] and state["refresh_token"] and state["id_token"]
    assert abs(state["expires_at"] - (time.time() + 3600)) < 60
    assert state["vos"] == ["vo.notebooks.egi.eu", "vo.access.egi.eu"]
    assert state["primary_vo"] == "vo.access.egi.eu"  # vo_priority wins over provider order
    home = result.client.get(f"{egi.hub.url}/hub/home")
    assert home.status_code == 200 and "alice@egi.eu" in home.text
    # PKCE and nonce were used on the way
    authorize = next(u for u in result.redirects if "/protocol/openid-connect/auth" in u)
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"]
    assert "offline_access" in query["scope"][0]
    # secrets never reach the hub log
    log = egi.hub.log()
    for key in ("access_token", "refresh_token", "id_token"):
        assert state[key] not in log


@pytest.mark.parametrize(
    "claims",
    [["eduperson_entitlement"], ["entitlements"], ["eduperson_entitlement", "entitlements"]],
    ids=["eduperson_entitlement", "entitlements", "both"],
)
def test_entitlements_in_either_claim_or_both_at_login_and_refresh(egi_hub_factory, claims):
    # as on Check-in: entitlements and voperson_id in userinfo only, never in the id_token;
    # each claim is released for its own scope, which the client must request
    scope = ["openid", "profile", "email", "offline_access", *claims, "voperson_id"]
    egi = egi_hub_factory(
        FAST_REFRESH + f"c.EGICheckinAuthenticator.scope = {scope!r}\n",
        access_token_lifetime=8,
        users=demo_users(entitlement_claims=claims),
        userinfo_only_claims=[*claims, "voperson_id"],
    )
    alice = login(egi.hub.url, "alice")
    assert alice.ok, alice.response.text[:500]
    model = egi.user_model("alice@egi.eu")
    assert sorted(model["groups"]) == ["vo.access.egi.eu", "vo.notebooks.egi.eu"]
    assert model["auth_state"]["vos"] == ["vo.notebooks.egi.eu", "vo.access.egi.eu"]
    assert login(egi.hub.url, "mallory").response.status_code == 403
    # a refresh: the id_token has no entitlement claim, so userinfo is asked, and the VOs stay
    before = model["auth_state"]
    egi.provider.reset_stats()
    sleep_into_refresh_window(egi, "alice@egi.eu")
    assert alice.client.get(f"{egi.hub.url}/hub/home").status_code == 200
    wait_until(
        lambda: egi.auth_state("alice@egi.eu")["access_token"] != before["access_token"],
        what="a refresh",
    )
    stats = egi.provider.stats()
    assert stats["token"]["refresh_token"] >= 1 and stats["userinfo"] >= 1
    after = egi.user_model("alice@egi.eu")
    assert after["auth_state"]["vos"] == before["vos"]
    assert sorted(after["groups"]) == ["vo.access.egi.eu", "vo.notebooks.egi.eu"]
    assert alice.client.get(f"{egi.hub.url}/hub/home").status_code == 200


def test_wrong_client_secret_keeps_sessions_and_refresh_tokens(egi_hub_factory):
    # the operator's error (secret rotated at the provider, not in the hub): nobody is logged
    # out, no token is dropped or revoked, one clear error in the log
    # a user's refreshes back off while they fail (first 5 s): 2 s at most keeps this short
    egi = egi_hub_factory(
        "c.Authenticator.auth_refresh_age = 1\nc.EGICheckinAuthenticator.refresh_leeway = 8\n"
        "c.EGICheckinAuthenticator.background_refresh_max_backoff = 2\n",
        access_token_lifetime=20,
    )
    alice = login(egi.hub.url, "alice")
    assert alice.ok
    before = egi.auth_state("alice@egi.eu")
    configured = egi.provider.client_secret
    egi.provider.set_client_secret("rotated-at-the-provider")
    egi.provider.reset_stats()
    sleep_into_refresh_window(egi, "alice@egi.eu", leeway=8)

    def home_is_open() -> bool:
        assert alice.client.get(f"{egi.hub.url}/hub/home").status_code == 200
        return True

    wait_until(
        lambda: home_is_open() and egi.provider.stats()["token"]["refresh_token"] >= 2,
        timeout=30,
        what="two refused refreshes",
    )
    state = egi.auth_state("alice@egi.eu")
    assert state["refresh_token"] == before["refresh_token"]
    assert state["access_token"] == before["access_token"]
    for key in ("refresh_token", "access_token"):
        assert egi.provider.introspect(before[key])["active"] is True
    log = egi.hub.log()
    errors = [line for line in log.splitlines() if "refused the hub's client credentials" in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith("[E ") and "client_id ('hub')" in errors[0]
    assert "client_secret" in errors[0]
    assert configured not in log and "rotated-at-the-provider" not in log
    assert "login required" not in log and "no longer authorized" not in log
    # the operator fixes it: the next refresh works and the session goes on without a login
    egi.provider.set_client_secret(configured)
    wait_until(
        lambda: (
            home_is_open()
            and egi.auth_state("alice@egi.eu")["refresh_token"] != before["refresh_token"]
        ),
        what="a refresh once the secret is right again",
    )
    assert egi.provider.introspect(egi.auth_state("alice@egi.eu")["access_token"])["active"]


@pytest.mark.provider("ours")
def test_non_member_gets_403_and_provider_garbage_gives_no_500(egi_hub_factory):
    egi = egi_hub_factory()
    result = login(egi.hub.url, "mallory")
    assert result.response.status_code == 403
    assert "403" in result.response.text
    assert egi.hub.api("GET", "/users/mallory@egi.eu").status_code == 404
    for mode in ("garbage", "html500"):
        egi.provider.set_fault(mode, endpoints=["token"])
        failed = login(egi.hub.url, "alice")
        assert failed.response.status_code == 503, failed.response.text[:300]
        assert "EGI Check-in did not answer" in failed.response.text
    egi.provider.set_fault("none")
    assert login(egi.hub.url, "alice").ok


def test_admin_from_entitlement(egi_hub_factory):
    egi = egi_hub_factory()
    assert login(egi.hub.url, "admin").ok
    assert egi.user_model("admin@egi.eu")["admin"] is True


def test_lost_vo_is_refused_at_next_refresh_and_admin_follows_entitlements(egi_hub_factory):
    egi = egi_hub_factory(FAST_REFRESH, access_token_lifetime=8)
    alice = login(egi.hub.url, "alice")
    admin = login(egi.hub.url, "admin")
    assert alice.ok and admin.ok
    # at the provider: alice leaves every allowed VO, admin becomes a plain member
    egi.provider.patch_claims(
        "alice", {"eduperson_entitlement": ["urn:mace:egi.eu:group:vo.other.eu:role=member"]}
    )
    egi.provider.patch_claims(
        "admin",
        {"eduperson_entitlement": [entitlement("vo.notebooks.egi.eu")]},
    )
    sleep_into_refresh_window(egi, "alice@egi.eu")
    home = alice.client.get(f"{egi.hub.url}/hub/home")
    assert home.status_code == 302 and "/hub/login" in home.headers["location"]
    again = login(egi.hub.url, "alice", client=alice.client)
    assert again.response.status_code == 403
    # the lost user's tokens are revoked at the provider and gone from auth_state
    assert not egi.auth_state("alice@egi.eu").get("refresh_token")
    admin_home = admin.client.get(f"{egi.hub.url}/hub/home")
    assert admin_home.status_code == 200
    assert egi.user_model("admin@egi.eu")["admin"] is False


def test_single_refresh_grant_under_50_concurrent_requests_with_rotation(egi_hub_factory):
    egi = egi_hub_factory(FAST_REFRESH, access_token_lifetime=8)
    assert login(egi.hub.url, "alice").ok
    token = user_token(egi, "alice@egi.eu")
    before = egi.auth_state("alice@egi.eu")
    egi.provider.reset_stats()
    sleep_into_refresh_window(egi, "alice@egi.eu")

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.get(
                        f"{egi.hub.hub_api_url}/user", headers={"Authorization": f"token {token}"}
                    )
                    for _ in range(50)
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 50
    stats = egi.provider.stats()
    assert stats["token"]["refresh_token"] == 1
    assert stats["invalid_grant"] == 0
    after = egi.auth_state("alice@egi.eu")
    assert after["refresh_token"] != before["refresh_token"]  # rotated and stored
    assert after["access_token"] != before["access_token"]
    assert after["expires_at"] > before["expires_at"]
    assert after["id_token"]


def test_no_provider_call_while_token_valid(egi_hub_factory):
    egi = egi_hub_factory("c.Authenticator.auth_refresh_age = 1")
    result = login(egi.hub.url, "alice")
    egi.provider.reset_stats()
    for _ in range(5):
        assert result.client.get(f"{egi.hub.url}/hub/home").status_code == 200
        time.sleep(0.3)
    stats = egi.provider.stats()
    assert stats["token"].get("refresh_token", 0) == 0 and stats.get("userinfo", 0) == 0


@pytest.mark.provider("ours")
def test_provider_down_keeps_valid_sessions_and_expiry_means_clean_relogin(egi_hub_factory):
    egi = egi_hub_factory(FAST_REFRESH, access_token_lifetime=8)
    alice = login(egi.hub.url, "alice")
    assert alice.ok
    expires_at = egi.auth_state("alice@egi.eu")["expires_at"]
    egi.provider.set_fault("down")
    sleep_into_refresh_window(egi, "alice@egi.eu")
    # refresh due, token still valid: the failed refresh keeps the session
    assert alice.client.get(f"{egi.hub.url}/hub/home").status_code == 200
    egi.provider.set_fault("html500")
    time.sleep(1.1)  # auth_refresh_age = 1: the hub refreshes again
    assert alice.client.get(f"{egi.hub.url}/hub/home").status_code == 200
    time.sleep(max(0.0, expires_at + 0.5 - time.time()))  # now expired
    expired = alice.client.get(f"{egi.hub.url}/hub/home")
    assert expired.status_code == 302 and "/hub/login" in expired.headers["location"]
    egi.provider.set_fault("none")
    assert login(egi.hub.url, "alice", client=alice.client).ok
    assert alice.client.get(f"{egi.hub.url}/hub/home").status_code == 200
    log = egi.hub.log()
    assert " 500 " not in log.replace("HTTP 500", "")
    assert log.count("Cannot refresh tokens of alice@egi.eu") == 1  # warned once


def test_logout_revokes_and_redirects_to_end_session(egi_hub_factory):
    egi = egi_hub_factory()
    alice = login(egi.hub.url, "alice")
    state = egi.auth_state("alice@egi.eu")
    assert egi.provider.introspect(state["refresh_token"])["active"] is True
    response = alice.client.get(f"{egi.hub.url}/hub/logout")
    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == egi.provider.endpoint("end_session")
    query = parse_qs(target.query)
    assert query["id_token_hint"] == [state["id_token"]]
    assert query["post_logout_redirect_uri"] == [f"{egi.hub.url}/hub/login"]
    for key in ("refresh_token", "access_token"):
        assert egi.provider.introspect(state[key])["active"] is False
    assert not egi.auth_state("alice@egi.eu").get("access_token")
    # the provider accepts the logout (once confirmed) and sends the browser back to the hub
    back = sign_out_at_provider(alice.client, response.headers["location"])
    assert back.headers["location"].startswith(egi.hub.url)


def test_discovery_failure_gives_a_clear_message(tmp_path):
    from tests.harness.hub import HubProcess, free_port

    dead = f"http://127.0.0.1:{free_port()}/auth/realms/egi"
    hub = HubProcess(
        tmp_path,
        f"""
        c.JupyterHub.authenticator_class = "egicheckin"
        c.EGICheckinAuthenticator.oidc_issuer = "{dead}"
        c.EGICheckinAuthenticator.client_id = "hub"
        c.EGICheckinAuthenticator.client_secret = "x"
        c.EGICheckinAuthenticator.allowed_vos = {{"vo.notebooks.egi.eu"}}
        c.EGICheckinAuthenticator.discovery_retries = 0
        """,
    )
    with hub:
        r = httpx.get(f"{hub.url}/hub/oauth_login", timeout=30)
        assert r.status_code == 503
        assert "Sign-in with EGI Check-in is unavailable" in r.text
        log = hub.log()
        assert "OIDC discovery failed" in log and dead in log


def test_start_up_refuses_disabled_auth_state(tmp_path):
    from tests.harness.hub import HubProcess

    hub = HubProcess(
        tmp_path,
        """
        c.JupyterHub.authenticator_class = "egicheckin"
        c.EGICheckinAuthenticator.oidc_issuer = "http://127.0.0.1:9/x"
        c.EGICheckinAuthenticator.enable_auth_state = False
        """,
    )
    with pytest.raises(RuntimeError) as info:
        hub.start(timeout=30)
    assert "EGICheckinAuthenticator.enable_auth_state must be True" in str(info.value)
