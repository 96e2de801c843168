"""Logout: RFC 7009 token revocation and OpenID Connect RP-initiated logout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from oauthenticator.oauth2 import OAuthLogoutHandler

if TYPE_CHECKING:
    from .authenticator import EGICheckinAuthenticator

# auth_state keys that hold credentials; dropped at logout and when authorization is lost
# ("jwt_login_bearers": the access tokens behind the user's jwt_login hub tokens)
TOKEN_KEYS = ("access_token", "refresh_token", "id_token", "token_response", "jwt_login_bearers")


async def revoke_token(
    authenticator: EGICheckinAuthenticator, endpoint: str, token: str, hint: str
) -> bool:
    """Revoke one token; True when the provider confirmed (RFC 7009: 200)."""
    try:
        response = await authenticator.post_as_client(
            endpoint, {"token": token, "token_type_hint": hint}, "revoking a token"
        )
    except Exception as e:
        authenticator.log.warning("Token revocation failed: cannot reach %s: %s", endpoint, e)
        return False
    if response.code != 200:
        authenticator.log.warning("Revocation at %s answered HTTP %s", endpoint, response.code)
        return False
    return True


async def revoke_tokens(
    authenticator: EGICheckinAuthenticator, tokens: Sequence[tuple[str, str]]
) -> int | None:
    """Revoke ``(token, type hint)`` pairs in order: how many the provider confirmed, or None
    when it has no revocation endpoint (logged)."""
    endpoint = await authenticator.get_endpoint("revocation_endpoint")
    if not endpoint:
        authenticator.log.warning("The provider has no revocation_endpoint: tokens not revoked")
        return None
    revoked = 0
    for token, hint in tokens:
        revoked += await revoke_token(authenticator, endpoint, token, hint)
    return revoked


async def revoke_auth_state_tokens(
    authenticator: EGICheckinAuthenticator, auth_state: dict[str, Any]
) -> bool:
    """Revoke the refresh token (Keycloak then drops its access tokens), then the access token."""
    tokens = [
        (token, key)
        for key in ("refresh_token", "access_token")
        if isinstance(token := auth_state.get(key), str) and token
    ]
    return await revoke_tokens(authenticator, tokens) == len(tokens)


def strip_tokens(auth_state: dict[str, Any]) -> dict[str, Any]:
    """A copy of auth_state without credentials (other keys survive)."""
    stripped = {k: v for k, v in auth_state.items() if k not in TOKEN_KEYS}
    stripped["expires_at"] = None
    return stripped


def end_session_url(
    endpoint: str, client_id: str, id_token: str | None, post_logout_redirect_uri: str | None
) -> str:
    params = {"client_id": client_id}
    if id_token:
        params["id_token_hint"] = id_token
    if post_logout_redirect_uri:
        params["post_logout_redirect_uri"] = post_logout_redirect_uri
    separator = "&" if "?" in endpoint else "?"
    return endpoint + separator + urlencode(params)


class EGILogoutHandler(OAuthLogoutHandler):
    """Revokes the user's tokens and sends the browser to the provider's end_session endpoint."""

    _end_session_target: str | None = None

    async def handle_logout(self) -> None:
        await super().handle_logout()
        user = self.current_user
        if user is not None:
            self._end_session_target = await self.authenticator.logout_tokens(user, self)

    async def render_logout_page(self) -> None:
        if self._end_session_target:
            self.redirect(self._end_session_target)
            return
        await super().render_logout_page()
