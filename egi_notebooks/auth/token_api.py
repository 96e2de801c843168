"""A hub API endpoint that hands out a user's current access token, and nothing else.

The tokens service (egi_notebooks/services/tokens) calls it with its own token. Reading
``auth_state`` through the standard API would need ``admin:auth_state`` and would send the
refresh token out of the hub; this endpoint needs only a custom scope (filterable by user or
group) and returns only the access token and its expiry.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .refresh import access_token_valid

ACCESS_TOKENS_SCOPE = "custom:egi-notebooks:access-tokens"
ACCESS_TOKENS_SCOPE_DESCRIPTION = (
    "Read users' current access tokens (never refresh tokens) from the hub."
)
ACCESS_TOKEN_PATH = r"/api/egi-notebooks/users/([^/]+)/access-token"


class AccessTokenAPIHandler(APIHandler):
    async def get(self, user_name: str) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not self.has_scope(f"{ACCESS_TOKENS_SCOPE}!user={user_name}"):
            raise web.HTTPError(403, f"Requires scope {ACCESS_TOKENS_SCOPE}")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, "No such user")
        authenticator = self.authenticator
        auth_state = await user.get_auth_state() or {}
        if auth_state.get("refresh_token") and not access_token_valid(auth_state):
            # background refresh keeps tokens fresh; this only covers a gap (hub restart)
            await authenticator.refresh_tokens(user)
            auth_state = await user.get_auth_state() or {}
        if not auth_state.get("access_token") or not access_token_valid(auth_state):
            raise web.HTTPError(404, "The user has no valid access token; log in again")
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {"access_token": auth_state["access_token"], "expires_at": auth_state["expires_at"]}
            )
        )
