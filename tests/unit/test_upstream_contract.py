"""The parts of JupyterHub that the share guard (egi_notebooks.auth.share_guard) relies on.

Each test fails when the installed JupyterHub renames the share handlers, moves their URLs,
changes their ``post`` or stops putting the authenticator's handlers first, so the guard is
revisited rather than silently bypassed. The same for the token creation that
egi_notebooks.auth.token_requests records, and for what the end of a lost authorization
uses (EGICheckinAuthenticator.drop_revoked_token_request, stop_server).
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from jupyterhub import apihandlers
from jupyterhub.apihandlers import shares
from jupyterhub.app import JupyterHub

from egi_notebooks.auth import share_guard
from egi_notebooks.auth.authenticator import EGICheckinAuthenticator


def test_the_share_handlers_keep_their_names_and_urls():
    routes: dict[str, list[str]] = {}
    for pattern, handler, *_ in shares.default_handlers:
        routes.setdefault(handler.__name__, []).append(pattern)
    assert routes["ServerShareAPIHandler"] == list(share_guard.SHARE_PATHS)
    assert routes["ServerShareCodeAPIHandler"] == list(share_guard.SHARE_CODE_PATHS)
    # and they are JupyterHub's API handlers as the app loads them
    assert all(route in apihandlers.default_handlers for route in shares.default_handlers)


def test_the_guarded_handlers_take_exactly_those_urls():
    assert share_guard.share_handlers() == [
        *((p, share_guard.GuardedServerShareAPIHandler) for p in share_guard.SHARE_PATHS),
        *((p, share_guard.GuardedServerShareCodeAPIHandler) for p in share_guard.SHARE_CODE_PATHS),
    ]
    assert issubclass(share_guard.GuardedServerShareAPIHandler, shares.ServerShareAPIHandler)
    assert issubclass(
        share_guard.GuardedServerShareCodeAPIHandler, shares.ServerShareCodeAPIHandler
    )


def test_post_keeps_its_signature_and_its_shares_scope():
    for cls in (shares.ServerShareAPIHandler, shares.ServerShareCodeAPIHandler):
        params = inspect.signature(inspect.unwrap(cls.post)).parameters
        assert list(params) == ["self", "user_name", "server_name"], cls
        assert params["server_name"].default is None
        assert inspect.iscoroutinefunction(inspect.unwrap(cls.post)), cls
        source = inspect.getsource(cls)
        assert re.search(r"@needs_scope\(['\"]shares['\"]\)\s+async def post\(", source), cls
    for cls in (
        share_guard.GuardedServerShareAPIHandler,
        share_guard.GuardedServerShareCodeAPIHandler,
    ):
        # ours is checked by JupyterHub's needs_scope too (before the spawner is asked)
        assert cls.post.__wrapped__.__qualname__ == f"{cls.__name__}.post"
        assert list(inspect.signature(cls.post.__wrapped__).parameters) == [
            "self",
            "user_name",
            "server_name",
        ]


def test_the_authenticators_handlers_come_before_jupyterhubs_api():
    source = inspect.getsource(JupyterHub.init_handlers)
    ours = source.index("self.authenticator.get_handlers(self)")
    theirs = source.index("apihandlers.default_handlers")
    assert ours < theirs


def test_the_authenticator_registers_the_guard(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    authenticator = EGICheckinAuthenticator(
        client_id="c", client_secret="s", oauth_callback_url="http://h/hub/oauth_callback"
    )
    handlers = authenticator.get_handlers(None)
    for route in share_guard.share_handlers():
        assert route in handlers


def test_the_guard_does_not_import_the_spawner():
    tree = ast.parse(Path(share_guard.__file__).read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "spawner" in m], imported


# ---- who asked for a user's token (egi_notebooks.auth.token_requests) --------------------


def test_token_creation_takes_the_note_from_the_json_body():
    from jupyterhub.apihandlers.users import UserTokenListAPIHandler

    from egi_notebooks.auth.token_requests import TOKENS_PATH, RecordingUserTokenListAPIHandler

    assert (TOKENS_PATH, UserTokenListAPIHandler) in apihandlers.default_handlers
    assert issubclass(RecordingUserTokenListAPIHandler, UserTokenListAPIHandler)
    source = inspect.getsource(UserTokenListAPIHandler.post)
    # the body (and so the note the recording handler writes) is read once, through this
    assert source.count("self.get_json_body()") == 1
    assert "note = body.get('note')" in source
    assert "user.new_api_token(\n                note=note," in source
    # JupyterHub's own mark, which token_requests.MINTED_BY recognises
    assert 'note = "Requested via api"' in source
    assert 'note += f" by {kind} {requester.name}"' in source


def test_no_other_api_handler_mints_a_users_token():
    minting = []
    for _, handler, *_ in apihandlers.default_handlers:
        for name, member in vars(handler).items():
            if callable(member) and "new_api_token(" in inspect.getsource(member):
                minting.append(f"{handler.__name__}.{name}")
    assert sorted(set(minting)) == ["UserTokenListAPIHandler.post"]


def test_the_authenticator_registers_the_recording_token_handler(monkeypatch):
    from egi_notebooks.auth.token_requests import TOKENS_PATH, RecordingUserTokenListAPIHandler

    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    authenticator = EGICheckinAuthenticator(
        client_id="c", client_secret="s", oauth_callback_url="http://h/hub/oauth_callback"
    )
    assert (TOKENS_PATH, RecordingUserTokenListAPIHandler) in authenticator.get_handlers(None)


# ---- the end of a lost authorization (EGICheckinAuthenticator.on_authorization_lost) -------


def test_token_authenticated_requests_are_marked_and_refresh_auth_reads_the_mark():
    from jupyterhub.handlers.base import BaseHandler

    assert "self._token_authenticated = True" in inspect.getsource(
        BaseHandler.get_current_user_token
    )
    assert "self.request.headers.get('Authorization'" in inspect.getsource(
        BaseHandler.get_auth_token
    )
    refresh_auth = inspect.getsource(BaseHandler.refresh_auth)
    if "auth_refresh_strict" in refresh_auth:  # 6.1: a request not token-authenticated logs in
        assert "if self._jupyterhub_user is user and (not self._token_authenticated):" in (
            refresh_auth
        )
    else:  # 5.5: every failed refresh drops the request's user
        dropped = r"if not auth_info:\s+self\.log\.warning\([^)]*\)\s+return\n"
        assert re.search(dropped, refresh_auth)


def test_servers_stop_through_the_proxy_and_user_stop():
    from jupyterhub.proxy import Proxy
    from jupyterhub.spawner import Spawner
    from jupyterhub.user import User

    assert list(inspect.signature(User.stop).parameters) == ["self", "server_name"]
    assert list(inspect.signature(Proxy.delete_user).parameters) == [
        "self",
        "user",
        "server_name",
    ]
    # the spawn in progress that stop_server waits for
    assert "_spawn_future = None" in inspect.getsource(Spawner)
