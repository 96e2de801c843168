"""A hub API endpoint that hands out a user's current access token, and nothing else.

The tokens service (egi_notebooks/services/tokens) calls it with its own token. Reading
``auth_state`` through the standard API would need ``admin:auth_state`` and would send the
refresh token out of the hub; this endpoint needs only a custom scope (filterable by user or
group) and returns only the access token and its expiry.

``GET`` answers for the user. ``POST`` with ``{"caller_token": ..., "server": bool}`` answers
only while ``caller_token`` (the token the tokens service was called with) is a live API
token of the user and, with ``server``, the very token the hub gave one of the user's
servers: the hub alone knows that, and a revoked token is refused at once.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.utils import compare_token
from tornado import web

from .refresh import access_token_valid, needs_refresh

ACCESS_TOKENS_SCOPE = "custom:egi-notebooks:access-tokens"
ACCESS_TOKENS_SCOPE_DESCRIPTION = (
    "Read users' current access tokens (never refresh tokens) from the hub."
)
ACCESS_TOKEN_PATH = r"/api/egi-notebooks/users/([^/]+)/access-token"


def is_server_token(orm_user: Any, token: str) -> bool:
    """``token`` is the API token the hub gave one of the user's running (or starting) servers.

    Each server's OAuth client secret is (a salted hash of) that server's API token, kept in
    the database: unlike ``Spawner.api_token`` it survives a hub restart.
    """
    for orm_spawner in orm_user.orm_spawners.values():
        client = orm_spawner.oauth_client
        if orm_spawner.server is None or client is None or not client.secret:
            continue
        if compare_token(client.secret, token):
            return True
    return False


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
        await self._write_access_token(self._target_user(user_name))

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
        if body.get("server") is True and not is_server_token(user.orm_user, caller):
            raise web.HTTPError(403, "The caller's token is not one of the user's servers")
        await self._write_access_token(user)

    async def _write_access_token(self, user: Any) -> None:
        auth_state = await self._fresh_auth_state(user)
        if not auth_state.get("access_token") or not access_token_valid(auth_state):
            raise web.HTTPError(404, "The user has no valid access token; log in again")
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
