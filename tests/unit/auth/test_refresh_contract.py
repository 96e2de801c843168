"""The authenticator's contract with Check-in on refresh (in process, no network).

- the claims of a refresh replace the stored ones: a fresh answer without any entitlement
  claim means no entitlements (Check-in leaves the claim out when a user has none left);
- ``userinfo_on_refresh=auto`` asks userinfo when the id_token carries no entitlement claim
  (Check-in's never does);
- ``invalid_client`` / ``unauthorized_client`` are the operator's error: sessions and refresh
  tokens are kept and one error is logged per interval;
- entitlements come from a list of claim names (``eduperson_entitlement`` and ``entitlements``).
"""

from __future__ import annotations

import logging
import time

import pytest

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.auth.refresh import (
    ClientAuthError,
    InvalidGrant,
    ProviderError,
    parse_token_response,
)
from tests.unit.auth.helpers import make_authenticator
from tests.unit.auth.test_tokens_and_discovery import ISSUER, OTHER_KEY, id_token, served

VO_A = "urn:mace:egi.eu:group:vo.a:role=member#aai.egi.eu"
VO_B = "urn:mace:egi.eu:group:vo.b:role=member#aai.egi.eu"
SECRET = "the-client-secret-value"


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


def make(**traits) -> EGICheckinAuthenticator:
    defaults = {"oidc_issuer": ISSUER, "client_id": "hub", "client_secret": SECRET}
    auth = make_authenticator(**{**defaults, "allowed_vos": {"vo.a", "vo.b"}, **traits})
    auth.metadata._fetch = served()
    return auth


class User:
    def __init__(self, name: str, auth_state: dict) -> None:
        self.name = name
        self.auth_state = auth_state
        self.spawners: dict = {}
        self.saved = 0

    async def get_auth_state(self):
        return self.auth_state

    async def save_auth_state(self, auth_state):
        self.saved += 1
        self.auth_state = auth_state


def stored(entitlements=(VO_A,), expires_in: float = 100) -> dict:
    return {
        "access_token": "old-at",
        "refresh_token": "old-rt",
        "id_token": "old-idt",
        "expires_at": time.time() + expires_in,
        "expires_in": 3600,
        "oauth_user": {
            "sub": "s",
            "voperson_id": "u@egi.eu",
            "eduperson_entitlement": list(entitlements),
        },
    }


def userinfo_stub(auth, answer: dict) -> list:
    calls = []

    async def token_to_user(token_info):
        calls.append(token_info["access_token"])
        return dict(answer)

    auth.token_to_user = token_to_user
    return calls


# ---- B: client errors are the operator's ---------------------------------------------------


@pytest.mark.parametrize(
    "status, error",
    [(401, "invalid_client"), (400, "invalid_client"), (400, "unauthorized_client")],
)
def test_client_errors_are_not_the_users(status, error):
    with pytest.raises(ClientAuthError) as info:
        parse_token_response(status, f'{{"error": "{error}"}}'.encode())
    assert not isinstance(info.value, InvalidGrant)
    assert isinstance(info.value, ProviderError)  # transient for the user's session
    assert error in str(info.value)
    with pytest.raises(InvalidGrant):
        parse_token_response(400, b'{"error": "invalid_grant"}')


async def test_wrong_client_secret_keeps_sessions_and_refresh_tokens(caplog):
    auth = make()
    calls = []

    async def refused(params):
        calls.append(params["grant_type"])
        raise ClientAuthError("invalid_client")

    async def no_revocation(user, auth_state):
        raise AssertionError("tokens must not be revoked for an operator error")

    auth.post_token_endpoint = refused
    auth.forget_tokens = no_revocation
    users = [User(f"u{i}@egi.eu", stored()) for i in range(3)]
    caplog.set_level(logging.INFO)
    for _ in range(3):
        for user in users:
            # due for refresh (100 s left, leeway 600 s) and still valid: keep the session
            assert await auth.refresh_tokens(user) is True
            assert user.auth_state["refresh_token"] == "old-rt"
            assert user.auth_state["access_token"] == "old-at"
    assert len(calls) == 3  # one try per user: the authenticator's backoff holds back the rest
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "client_id" in message and "'hub'" in message and "client_secret" in message
    assert SECRET not in caplog.text
    assert "Cannot refresh tokens of" not in caplog.text  # no per-user warning for this
    # an expired access token: log in again, but the refresh token is still kept
    expired = User("late@egi.eu", stored(expires_in=-5))
    assert await auth.refresh_tokens(expired) is False
    assert expired.auth_state["refresh_token"] == "old-rt"
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


async def test_client_error_is_logged_again_after_the_interval(caplog):
    auth = make(client_error_log_interval=300)

    async def refused(params):
        raise ClientAuthError("unauthorized_client")

    auth.post_token_endpoint = refused
    user = User("u@egi.eu", stored())
    await auth.refresh_tokens(user)
    auth._client_error_logged_at -= 301  # as if five minutes had passed
    auth.refresh_backoff.succeeded(user.name)  # and the user's backoff too
    await auth.refresh_tokens(user)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and "unauthorized_client" in errors[1].getMessage()


# ---- C: fresh claims replace the stored ones -------------------------------------------------


async def test_userinfo_without_the_claim_means_no_entitlements():
    auth = make()
    calls = userinfo_stub(auth, {"sub": "s", "voperson_id": "u@egi.eu"})  # claim left out
    fresh = id_token(voperson_id="u@egi.eu")  # Check-in: no entitlements in the id_token
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at", "id_token": fresh}
    )
    assert calls == ["new-at"]  # auto: the id_token had no entitlement claim, userinfo asked
    state = model["auth_state"]
    assert "eduperson_entitlement" not in state["oauth_user"]
    assert state["vos"] == [] and state["entitlements"] == [] and state["primary_vo"] is None
    assert not await auth.is_still_authorized("u@egi.eu", model)


@pytest.mark.parametrize("mode", ["auto", "always"])
async def test_entitlements_only_in_userinfo_are_kept(mode):
    auth = make(userinfo_on_refresh=mode)
    calls = userinfo_stub(auth, {"sub": "s", "eduperson_entitlement": [VO_B]})
    fresh = id_token(voperson_id="u@egi.eu")
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at", "id_token": fresh}
    )
    assert calls == ["new-at"]
    assert model["auth_state"]["vos"] == ["vo.b"]  # replaced, not merged with vo.a
    assert await auth.is_still_authorized("u@egi.eu", model)


async def test_auto_uses_an_id_token_that_carries_entitlements():
    auth = make()
    calls = userinfo_stub(auth, {"sub": "s"})
    fresh = id_token(entitlements=[VO_B])
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at", "id_token": fresh}
    )
    assert calls == []
    assert model["auth_state"]["vos"] == ["vo.b"]


async def test_claim_present_and_empty_means_no_entitlements():
    auth = make()
    userinfo_stub(auth, {"sub": "s", "eduperson_entitlement": []})
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at"}
    )
    assert model["auth_state"]["vos"] == []


async def test_never_trusts_the_verified_id_token_alone():
    auth = make(userinfo_on_refresh="never")
    calls = userinfo_stub(auth, {"sub": "s", "eduperson_entitlement": [VO_A]})
    fresh = id_token(voperson_id="u@egi.eu")
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at", "id_token": fresh}
    )
    assert calls == [] and model["auth_state"]["vos"] == []


async def test_refresh_that_loses_every_entitlement_drops_tokens_groups_and_admin():
    auth = make(admin_entitlements={"vo.a"})
    userinfo_stub(auth, {"sub": "s", "voperson_id": "u@egi.eu"})

    async def granted(params):
        return {"access_token": "new-at", "refresh_token": "new-rt", "expires_in": 3600}

    forgotten = []

    async def forget(user, auth_state):
        forgotten.append(auth_state["refresh_token"])
        await user.save_auth_state({"oauth_user": auth_state["oauth_user"], "vos": []})

    auth.post_token_endpoint = granted
    auth.forget_tokens = forget
    user = User("u@egi.eu", stored())
    assert await auth.refresh_tokens(user) is False
    assert forgotten == ["new-rt"]  # the tokens of this refresh are revoked
    assert not user.auth_state.get("refresh_token")


# ---- A: entitlement claim names ------------------------------------------------------------------


def state_with(**claims) -> dict:
    return {"oauth_user": claims}


def urns(auth, auth_state) -> list[str]:
    return [e.urn for e in auth.entitlements_from(auth_state)]


def test_both_claim_names_are_read_by_default_united_in_order():
    auth = make()
    assert auth.entitlements_claims == ["eduperson_entitlement", "entitlements"]
    assert urns(auth, state_with(eduperson_entitlement=[VO_A])) == [VO_A]
    assert urns(auth, state_with(entitlements=[VO_B])) == [VO_B]
    both = state_with(eduperson_entitlement=[VO_B, VO_A], entitlements=[VO_A, VO_B, VO_A])
    assert urns(auth, both) == [VO_B, VO_A]
    assert urns(auth, state_with(entitlements=VO_A)) == [VO_A]  # one string, not a list
    assert urns(auth, state_with(entitlements=[VO_A, 7, None, {"x": 1}, ["y"]])) == [VO_A]
    assert urns(auth, state_with(entitlements={"vo": VO_A}, eduperson_entitlement=3)) == []


def test_huge_entitlement_lists_are_cut_short():
    auth = make()
    many = [f"urn:mace:egi.eu:group:vo{i}.eu:role=member" for i in range(200_000)]
    found = auth.entitlements_from(state_with(entitlements=many, eduperson_entitlement=many))
    assert 10_000 <= len(found) < 200_000


def test_entitlements_claims_is_configurable():
    auth = make(entitlements_claims=["entitlements"])
    assert urns(auth, state_with(eduperson_entitlement=[VO_A], entitlements=[VO_B])) == [VO_B]


def test_deprecated_entitlements_claim_still_works_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    auth = make(entitlements_claim="my_claim")
    assert auth.entitlements_claims == ["my_claim"]
    assert "entitlements_claim is deprecated" in caplog.text
    assert "entitlements_claims" in caplog.text
    assert urns(auth, state_with(my_claim=[VO_A], eduperson_entitlement=[VO_B])) == [VO_A]
    # both set: the new one wins, and the warning says so
    caplog.clear()
    both = make(entitlements_claim="my_claim", entitlements_claims=["entitlements"])
    assert both.entitlements_claims == ["entitlements"]
    assert "deprecated and ignored" in caplog.text


def test_default_scope_asks_for_the_claim_existing_clients_have_registered():
    # Check-in refuses a scope the client has not registered (invalid_scope): the default
    # must not ask for the new `entitlements` scope that existing clients do not have
    assert "eduperson_entitlement" in make().scope
    assert "entitlements" not in make().scope


async def test_background_refresh_backs_off_and_keeps_the_user_on_client_errors():
    from egi_notebooks.auth.background import BackgroundRefresher
    from egi_notebooks.auth.refresh import RefreshBackoff

    auth = make()
    clock = [1000.0]
    auth._refresh_backoff = RefreshBackoff(first=5, maximum=300, clock=lambda: clock[0])
    tries = []

    async def refused(params):
        tries.append(time.time())
        raise ClientAuthError("invalid_client")

    auth.post_token_endpoint = refused
    user = User("u@egi.eu", stored())
    user.spawners = {"": type("Spawner", (), {"active": True})()}
    app = type("App", (), {"users": {user.name: user}})()
    refresher = BackgroundRefresher(
        auth, app, concurrency=2, max_sleep=30, max_backoff=300, log=auth.log
    )
    await refresher.tick()
    assert len(tries) == 1
    assert auth.refresh_backoff.delay(user.name) == 5.0  # first back-off step
    assert refresher.next_check[user.name] > time.time() + 4
    await refresher.tick()  # not due yet: no second try
    assert len(tries) == 1
    refresher.next_check[user.name] = 0
    await refresher.tick()  # due, but the authenticator's backoff has not passed
    assert len(tries) == 1
    clock[0] += 6
    refresher.next_check[user.name] = 0
    await refresher.tick()
    assert len(tries) == 2 and auth.refresh_backoff.delay(user.name) == 10.0
    assert user.auth_state["refresh_token"] == "old-rt" and user.saved == 0


async def test_always_still_verifies_the_refresh_id_token():
    # the id_token kept in auth_state is the logout hint and the subject that later userinfo
    # answers are compared with: a forged one must never be stored, whatever the claim source
    from egi_notebooks.auth.discovery import IdTokenError

    auth = make(userinfo_on_refresh="always")
    userinfo_stub(auth, {"sub": "s", "eduperson_entitlement": [VO_A]})
    forged = id_token(key=OTHER_KEY)
    with pytest.raises(IdTokenError):
        await auth.auth_model_from_refresh(
            User("u@egi.eu", {}), stored(), {"access_token": "new-at", "id_token": forged}
        )
