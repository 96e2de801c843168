"""The private parts of oauthenticator and tornado that the authenticator still uses.

One test per private method, through the code of ours that relies on it: each fails when the
installed upstream renames it, changes its arguments or stops doing what we rely on, so the
use is revisited rather than silently broken.
"""

from __future__ import annotations

import inspect
import logging
import sys
import types
from unittest import mock

import pytest
from oauthenticator.oauth2 import OAuthenticator, OAuthLoginHandler, _serialize_state
from tornado import httputil, web

from egi_notebooks.auth.login import EGICallbackHandler, nonce_from_state_cookie
from tests.unit.auth.test_refresh_contract import VO_A, User, make, stored, userinfo_stub


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


def test_login_handler_get_is_still_the_shape_oauth_redirect_copies():
    """EGILoginHandler.oauth_redirect is OAuthLoginHandler.get plus a nonce: upstream builds
    its state in a local variable with no hook. Its private helpers
    (_generate_state_id, _get_next_url, _generate_pkce_params, _serialize_state) are used
    the same way."""
    source = inspect.getsource(OAuthLoginHandler.get)
    for piece in (
        "_generate_state_id()",
        "_get_next_url()",
        "_generate_pkce_params()",
        "set_state_cookie(cookie_state)",
        '_serialize_state({"state_id": state_id})',
        "extra_authorize_params.copy()",
        "self.authorize_redirect(",
    ):
        assert piece in source, piece


def test_state_cookie_round_trip_gives_the_nonce_back():
    # _serialize_state (login) and _deserialize_state (callback, nonce_from_state_cookie)
    cookie = _serialize_state({"state_id": "s", "next_url": "/hub/", "nonce": "the-nonce"})
    handler = types.SimpleNamespace(get_state_cookie=lambda: cookie)
    assert nonce_from_state_cookie(handler) == "the-nonce"
    assert nonce_from_state_cookie(types.SimpleNamespace(get_state_cookie=lambda: None)) is None


async def test_apply_managed_groups_gives_a_refresh_its_groups_and_admin():
    # refresh builds its auth model itself and calls upstream's _apply_managed_groups, as
    # authenticate does at login: groups from get_user_groups, admin from admin_groups
    assert list(inspect.signature(OAuthenticator._apply_managed_groups).parameters) == [
        "self",
        "auth_model",
    ]
    auth = make(admin_groups={"vo.a"})
    userinfo_stub(auth, {"sub": "s", "eduperson_entitlement": [VO_A]})
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at"}
    )
    assert model["groups"] == ["vo.a"]
    assert model["admin"] is True


async def test_call_modify_auth_state_hook_runs_the_operators_hook_on_refresh():
    seen = []

    async def hook(authenticator, auth_state):
        seen.append(authenticator)
        return {**auth_state, "added_by_hook": auth_state["access_token"]}

    auth = make(modify_auth_state_hook=hook)
    userinfo_stub(auth, {"sub": "s", "eduperson_entitlement": [VO_A]})
    model = await auth.auth_model_from_refresh(
        User("u@egi.eu", {}), stored(), {"access_token": "new-at"}
    )
    assert seen == [auth]
    assert model["auth_state"]["added_by_hook"] == "new-at"
    assert model["auth_state"]["vos"] == ["vo.a"]  # update_auth_model ran on the hook's state


@pytest.mark.parametrize("answer", [True, False])
async def test_call_refresh_user_hook_answer_wins(answer):
    calls = []

    def hook(authenticator, user, auth_state):
        calls.append((authenticator, user.name, auth_state["access_token"]))
        return answer

    auth = make(refresh_user_hook=hook)
    # due for refresh: without the hook's answer refresh_user would ask the provider
    assert await auth.refresh_user(User("u@egi.eu", stored())) is answer
    assert calls == [(auth, "u@egi.eu", "old-at")]


async def test_call_refresh_user_hook_none_falls_through():
    async def hook(authenticator, user, auth_state):
        return None

    auth = make(refresh_user_hook=hook)
    assert await auth.refresh_user(User("u@egi.eu", stored(expires_in=3600))) is True


def test_callback_error_lines_carry_no_query_string(caplog):
    # EGICallbackHandler overrides tornado's private _request_summary, which
    # RequestHandler.log_exception uses for HTTPError lines
    app = web.Application(hub=types.SimpleNamespace(base_url="/hub/"))
    connection = mock.Mock()
    connection.context = mock.Mock(remote_ip="127.0.0.1", protocol="http")
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine(
            "GET", "/hub/oauth_callback?code=the-code&state=the-state", "HTTP/1.1"
        ),
        headers=httputil.HTTPHeaders({"Host": "127.0.0.1"}),
        connection=connection,
    )
    handler = EGICallbackHandler(app, request)
    caplog.set_level(logging.DEBUG)
    for error in (web.HTTPError(500, "upstream said no"), ValueError("a bug")):
        try:
            raise error
        except Exception:
            handler.log_exception(*sys.exc_info())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert all("GET /hub/oauth_callback (127.0.0.1)" in m for m in messages), messages
    assert "the-code" not in caplog.text and "the-state" not in caplog.text
