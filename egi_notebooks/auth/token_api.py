"""A hub API endpoint that hands out a user's current access token, and nothing else.

The tokens service (egi_notebooks/services/tokens) calls it with its own token. Reading
``auth_state`` through the standard API would need ``admin:auth_state`` and would send the
refresh token out of the hub; this endpoint needs only a custom scope (filterable by user or
group) and returns only the access token and its expiry.

``GET`` answers for the user. ``POST`` with ``{"caller_token": ..., "server": bool}`` answers
only while ``caller_token`` (the token the tokens service was called with) is a live API
token of the user and, with ``server``, the very token the hub gave one of the user's
servers: the hub alone knows that, and a revoked token is refused at once. A server that has
been shared since it started (:mod:`egi_notebooks.shared_servers`) is refused until it
restarts; the tokens handed to each server are recorded there, so that a share revokes them
whatever the spawner.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.utils import compare_token
from tornado import web

from ..shared_servers import delivered, shared_since_start
from .refresh import access_token_valid, needs_refresh
from .token_requests import minted_by_another

ACCESS_TOKENS_SCOPE = "custom:egi-notebooks:access-tokens"
ACCESS_TOKENS_SCOPE_DESCRIPTION = (
    "Read users' current access tokens (never refresh tokens) from the hub."
)
ACCESS_TOKEN_PATH = r"/api/egi-notebooks/users/([^/]+)/access-token"
#: the refusal of a server's token after a share (the tokens service relays it)
SERVER_WAS_SHARED = (
    "The caller's server was shared since it started: restart it to get tokens again"
)


def server_of_token(orm_user: Any, token: str) -> Any:
    """The ``orm.Spawner`` of the user's running (or starting) server whose API token
    ``token`` is, ``None`` for any other token.

    Each server's OAuth client secret is (a salted hash of) that server's API token, kept in
    the database: unlike ``Spawner.api_token`` it survives a hub restart.
    """
    for orm_spawner in orm_user.orm_spawners.values():
        client = orm_spawner.oauth_client
        if orm_spawner.server is None or client is None or not client.secret:
            continue
        if compare_token(client.secret, token):
            return orm_spawner
    return None


class AccessTokenAPIHandler(APIHandler):
    def _target_user(self, user_name: str) -> Any:
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not self.has_scope(f"{ACCESS_TOKENS_SCOPE}!user={user_name}"):
            raise web.HTTPError(403, f"Requires scope {ACCESS_TOKENS_SCOPE}")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, "No such user")
        return user

    async def get(self, user_name: str) -> None:
        await self._write_access_token(self._target_user(user_name), None)

    async def post(self, user_name: str) -> None:
        user = self._target_user(user_name)
        # parsed here, not with get_json_body: that logs a body it cannot parse, and this
        # body holds a token
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            body = None
        caller = body.get("caller_token") if isinstance(body, dict) else None
        if not isinstance(caller, str) or not caller:
            raise web.HTTPError(400, 'Body must be {"caller_token": <token>, "server": bool}')
        orm_token = orm.APIToken.find(self.db, caller, kind="user")
        if orm_token is None or orm_token.user_id != user.orm_user.id:
            raise web.HTTPError(403, "The caller's token is not a valid token of this user")
        if minted_by_another(orm_token.note):
            # it would outlive its requester's rights (an admin demoted at Check-in)
            raise web.HTTPError(403, "The caller's token was minted for this user by another")
        server = None
        if body.get("server") is True:
            server = server_of_token(user.orm_user, caller)
            if server is None:
                raise web.HTTPError(403, "The caller's token is not one of the user's servers")
            if shared_since_start(self.db, server):
                await self._revoke_left_over(user, server)
                raise web.HTTPError(403, SERVER_WAS_SHARED)
        await self._write_access_token(user, server)

    async def _revoke_left_over(self, user: Any, server: Any) -> None:
        """Revoke what this server was handed and is still recorded: a share the share guard
        did not see (made otherwise) is found here at the server's next call."""
        tokens = delivered.of(server.id)
        revoke = getattr(self.authenticator, "revoke_access_tokens", None)
        if not tokens or revoke is None:
            return
        try:
            revoked = await revoke(tokens)
            if revoked == len(tokens):
                delivered.forget(server.id, tokens)
            auth_state = await user.get_auth_state() or {}
            if auth_state.get("access_token") in tokens and auth_state.get("refresh_token"):
                await self.authenticator.refresh_tokens(user, force=True)
        except Exception as e:  # the caller is refused regardless
            self.log.warning("Revoking the tokens of a shared server failed: %s", type(e).__name__)

    async def _write_access_token(self, user: Any, server: Any) -> None:
        auth_state = await self._fresh_auth_state(user)
        if not auth_state.get("access_token") or not access_token_valid(auth_state):
            raise web.HTTPError(404, "The user has no valid access token; log in again")
        if server is not None:
            # asked again after the last await: a share made meanwhile has its guard revoke
            # what is recorded here, so the token is recorded before it is written
            if shared_since_start(self.db, server):
                raise web.HTTPError(403, SERVER_WAS_SHARED)
            delivered.add(server.id, auth_state["access_token"], auth_state.get("expires_at"))
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {"access_token": auth_state["access_token"], "expires_at": auth_state["expires_at"]}
            )
        )

    async def _fresh_auth_state(self, user: Any) -> dict:
        """The stored tokens, refreshed first when within the refresh leeway of expiry.

        The background refresh normally got there first; this covers it being late (hub
        restart, a busy loop, ``background_refresh = False``) so that no caller gets a token
        about to expire. While the provider fails, the authenticator's per-user
        ``refresh_backoff`` holds the refresh back: callers do not each cause a refresh grant.
        """
        authenticator = self.authenticator
        auth_state = await user.get_auth_state() or {}
        if not (
            auth_state.get("refresh_token")
            and needs_refresh(auth_state, authenticator.refresh_leeway)
        ):
            return auth_state
        await authenticator.refresh_tokens(user)
        return await user.get_auth_state() or {}
