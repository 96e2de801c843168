"""The token life cycle in the authenticator, in process against the real local provider.

- logout and user deletion revoke under the user's refresh lock: a refresh racing them never
  presents a revoked refresh token (``invalid_grant``) nor leaves a rotated one alive;
- one refresh backoff per user, owned by the authenticator, whoever asks for the refresh;
- the post-logout redirect is built from configuration, never from the request's Host;
- a new login revokes the grant it replaces, unless it is the same grant.
"""

from __future__ import annotations

import asyncio
import copy
import time
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.auth.background import BackgroundRefresher
from egi_notebooks.auth.refresh import RefreshBackoff
from tests.harness.provider import DEFAULT_CONFIG, OURS, ProviderProcess
from tests.unit.auth.helpers import make_authenticator

LOGIN = "alice"
DEADLINE = 60.0  # seconds: generous, the machine is shared


@pytest.fixture(scope="module")
def provider():
    # ours: these tests inject faults (set_fault)
    with ProviderProcess(OURS).start(copy.deepcopy(DEFAULT_CONFIG)) as p:
        yield p


@pytest.fixture(autouse=True)
def clean(request, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    yield
    if "provider" in request.fixturenames:
        request.getfixturevalue("provider").set_fault("none")


def make(provider: ProviderProcess, **traits) -> EGICheckinAuthenticator:
    return make_authenticator(
        **{
            "oidc_issuer": provider.issuer,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "allowed_vos": {"vo.notebooks.egi.eu", "vo.access.egi.eu"},
            "end_session_redirect": False,
            "http_request_kwargs": {"connect_timeout": 10.0, "request_timeout": 30.0},
            **traits,
        }
    )


class User:
    def __init__(self, name: str, auth_state: dict) -> None:
        self.name = name
        self.auth_state = auth_state
        self.spawners: dict = {}

    async def get_auth_state(self):
        return copy.deepcopy(self.auth_state)

    async def save_auth_state(self, auth_state):
        self.auth_state = copy.deepcopy(auth_state)


async def logged_in(provider: ProviderProcess, auth, expires_in: float = 5) -> User:
    """A user whose stored tokens come from a real login, due for refresh."""
    await auth.ensure_endpoints()
    token_info = await asyncio.to_thread(provider.login_tokens, LOGIN)
    user_info = await auth.token_to_user(token_info)
    auth_state = auth.build_auth_state_dict(token_info, user_info)
    auth_state["expires_at"] = time.time() + expires_in  # inside the refresh leeway
    return User(user_info["voperson_id"], auth_state)


async def stats(provider: ProviderProcess) -> dict:
    return await provider.astats()


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def assert_nothing_alive(provider: ProviderProcess, user: User) -> None:
    assert not user.auth_state.get("refresh_token")
    assert not user.auth_state.get("access_token")
    assert await provider.aadmin("GET", f"/_admin/tokens/{LOGIN}") == {"access": 0, "refresh": 0}


# ---- logout and deletion take the refresh lock -------------------------------------------------


async def test_logout_during_a_refresh_waits_for_it_and_revokes_the_new_tokens(provider):
    auth = make(provider)
    user = await logged_in(provider, auth)
    await provider.areset_stats()
    # the refresh grant reaches the provider and is held there a moment
    await provider.aset_fault("slow", delay=1.0, endpoints=["token"], count=1)
    refresh = asyncio.ensure_future(auth.refresh_tokens(user))
    await until(
        lambda: _calls(provider, "token_calls", 1), "the refresh grant never reached the provider"
    )
    await auth.logout_tokens(user, handler=None)
    await refresh
    after = await stats(provider)
    assert after["invalid_grant"] == 0, "a refresh grant presented a revoked refresh token"
    await assert_nothing_alive(provider, user)


async def test_a_refresh_during_logout_waits_and_then_has_nothing_to_refresh(provider):
    auth = make(provider)
    user = await logged_in(provider, auth)
    await provider.areset_stats()
    # the revocation reaches the provider and is held there a moment
    await provider.aset_fault("slow", delay=1.0, endpoints=["revocation"], count=1)
    logout = asyncio.ensure_future(auth.logout_tokens(user, handler=None))
    await until(lambda: _calls(provider, "revocation", 1), "the revocation never arrived")
    assert await auth.refresh_tokens(user) is False  # logged out: log in again
    await logout
    after = await stats(provider)
    assert after["token"]["refresh_token"] == 0, "a refresh grant ran during the logout"
    assert after["invalid_grant"] == 0
    await assert_nothing_alive(provider, user)


async def test_deleting_a_user_during_a_refresh_revokes_the_new_tokens(provider):
    auth = make(provider)
    user = await logged_in(provider, auth)
    await provider.areset_stats()
    await provider.aset_fault("slow", delay=1.0, endpoints=["token"], count=1)
    refresh = asyncio.ensure_future(auth.refresh_tokens(user))
    await until(
        lambda: _calls(provider, "token_calls", 1), "the refresh grant never reached the provider"
    )
    await auth.delete_user(user)
    await refresh
    assert (await stats(provider))["invalid_grant"] == 0
    await assert_nothing_alive(provider, user)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_revocation_authenticates_the_client_as_the_token_endpoint_does(provider, method):
    auth = make(provider, token_endpoint_auth_method=method)
    user = await logged_in(provider, auth, expires_in=3600)
    assert await auth.refresh_tokens(user, force=True)  # the token endpoint, same method
    await auth.forget_user_tokens(user)
    await assert_nothing_alive(provider, user)


async def _calls(provider: ProviderProcess, key: str, at_least: int) -> bool:
    return (await stats(provider))[key] >= at_least


# ---- one backoff per user ---------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum_and_clears_on_success():
    now = [1000.0]
    backoff = RefreshBackoff(first=5, maximum=30, clock=lambda: now[0])
    assert not backoff.waiting("u") and backoff.delay("u") is None
    assert [backoff.failed("u") for _ in range(5)] == [5, 10, 20, 30, 30]
    assert backoff.waiting("u") and backoff.remaining("u") == 30
    now[0] += 30
    assert not backoff.waiting("u")  # may try again; a failure goes on doubling
    assert backoff.failed("u") == 30
    now[0] += 1000  # long past: starts over
    assert backoff.failed("u") == 5
    backoff.succeeded("u")
    assert "u" not in backoff and not backoff.waiting("u")


@pytest.mark.parametrize("background_refresh", [True, False])
async def test_a_failing_provider_is_asked_once_per_backoff_whoever_asks(
    provider, background_refresh
):
    auth = make(provider, background_refresh=background_refresh)
    user = await logged_in(provider, auth, expires_in=200)  # due, still valid
    await provider.aset_fault("html500", endpoints=["token"])
    before = (await stats(provider))["faulted"]
    for _ in range(20):
        assert await auth.refresh_user(user) is True  # the current token while it lasts
    assert (await stats(provider))["faulted"] - before == 1
    assert auth.refresh_backoff.waiting(user.name)
    assert auth.refresh_backoff.delay(user.name) == 5.0


async def test_the_background_refresher_uses_the_authenticators_backoff(provider):
    auth = make(provider)
    user = await logged_in(provider, auth, expires_in=200)
    user.spawners = {"": SimpleNamespace(active=True)}
    users = {user.name: user}
    app = SimpleNamespace(users=users)
    refresher = BackgroundRefresher(
        auth, app, concurrency=2, max_sleep=30, max_backoff=300, log=auth.log
    )
    await provider.aset_fault("html500", endpoints=["token"])
    before = (await stats(provider))["faulted"]
    await refresher.tick()
    assert auth.refresh_backoff.delay(user.name) == 5.0
    assert refresher.next_check[user.name] > time.time() + 4
    # the user's server stops: the backoff stays with the user, not with the pass
    user.spawners = {}
    await refresher.tick()
    assert auth.refresh_backoff.waiting(user.name)
    # a request in between is held back by the same backoff
    assert await auth.refresh_user(user) is True
    user.spawners = {"": SimpleNamespace(active=True)}
    await refresher.tick()
    assert (await stats(provider))["faulted"] - before == 1
    await provider.aset_fault("none")
    # once the backoff has passed, the next pass refreshes and clears it
    auth.refresh_backoff.clock = lambda: time.monotonic() + 3600
    refresher.next_check[user.name] = 0
    await refresher.tick()
    assert user.name not in auth.refresh_backoff
    assert user.auth_state["expires_at"] > time.time() + 600


# ---- the post-logout redirect ---------------------------------------------------------------


def handler_for(host: str, public_url: str = "", login_url: str = "/hub/login"):
    request = SimpleNamespace(protocol="http", host=host)
    settings = {"login_url": login_url, "public_url": urlparse(public_url) if public_url else ""}
    return SimpleNamespace(request=request, settings=settings)


def test_post_logout_redirect_comes_from_configuration_not_the_host_header(provider):
    evil = handler_for("evil.example.net")
    auth = make(provider, oauth_callback_url="https://hub.example.org/hub/oauth_callback")
    assert auth.post_logout_uri_for(evil) == "https://hub.example.org/hub/login"
    # JupyterHub.public_url (it includes the base URL, as login_url does)
    public = handler_for("evil.example.net", "https://notebooks.example.org/x/", "/x/hub/login")
    assert auth.post_logout_uri_for(public) == "https://notebooks.example.org/x/hub/login"
    explicit = make(provider, post_logout_redirect_uri="https://other.example.org/bye")
    assert explicit.post_logout_uri_for(evil) == "https://other.example.org/bye"


# ---- a new login replaces the previous grant --------------------------------------------------


async def test_a_new_login_revokes_the_refresh_token_it_replaces(provider):
    auth = make(provider)
    user = await logged_in(provider, auth)
    old = dict(user.auth_state)
    second = await logged_in(provider, auth)
    await auth.replace_grant(user, second.auth_state)
    assert user.auth_state["refresh_token"] == second.auth_state["refresh_token"]
    assert not (await provider.aintrospect(old["refresh_token"]))["active"]
    assert not (await provider.aintrospect(old["access_token"]))["active"]
    assert (await provider.aintrospect(second.auth_state["refresh_token"]))["active"]
    # the same grant again (nothing new was issued): nothing is revoked
    await auth.replace_grant(user, second.auth_state)
    assert (await provider.aintrospect(second.auth_state["refresh_token"]))["active"]
