"""Logout: RFC 7009 token revocation and OpenID Connect RP-initiated logout."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from oauthenticator.oauth2 import OAuthLogoutHandler
from tornado.httpclient import HTTPRequest

if TYPE_CHECKING:
    from .authenticator import EGICheckinAuthenticator

# auth_state keys that hold credentials; dropped at logout and when authorization is lost
TOKEN_KEYS = ("access_token", "refresh_token", "id_token", "token_response")


def client_auth(
    client_id: str, client_secret: str, basic: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, form fields) authenticating the client, as the token endpoint is configured."""
    if basic:
        raw = f"{client_id}:{client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}, {}
    return {}, {"client_id": client_id, "client_secret": client_secret}


async def revoke_token(
    authenticator: EGICheckinAuthenticator, endpoint: str, token: str, hint: str
) -> bool:
    """Revoke one token; True when the provider confirmed (RFC 7009: 200)."""
    headers, fields = client_auth(
        authenticator.client_id, authenticator.client_secret, authenticator.basic_auth
    )
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = HTTPRequest(
        endpoint,
        method="POST",
        headers=headers,
        body=urlencode({"token": token, "token_type_hint": hint, **fields}),
        validate_cert=authenticator.validate_server_cert,
        **authenticator.http_request_kwargs,
    )
    try:
        response = await authenticator.http_client.fetch(request, raise_error=False)
    except Exception as e:
        authenticator.log.warning("Token revocation failed: cannot reach %s: %s", endpoint, e)
        return False
    if response.code != 200:
        authenticator.log.warning("Revocation at %s answered HTTP %s", endpoint, response.code)
        return False
    return True


async def revoke_auth_state_tokens(
    authenticator: EGICheckinAuthenticator, auth_state: dict[str, Any]
) -> bool:
    """Revoke the refresh token (Keycloak then drops its access tokens), then the access token."""
    endpoint = await authenticator.get_endpoint("revocation_endpoint")
    if not endpoint:
        authenticator.log.warning("The provider has no revocation_endpoint: tokens not revoked")
        return False
    ok = True
    for key, hint in (("refresh_token", "refresh_token"), ("access_token", "access_token")):
        token = auth_state.get(key)
        if isinstance(token, str) and token:
            ok = await revoke_token(authenticator, endpoint, token, hint) and ok
    return ok


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


class LogoutMixin:
    """Logout, user deletion and the grant a new login replaces, for EGICheckinAuthenticator.

    Every change of a user's stored tokens here runs under the user's refresh lock
    (``self._single_flight``) and re-reads the stored auth_state inside it: a refresh in
    flight would otherwise present a refresh token being revoked (``invalid_grant``), or
    rotate it and save the new, unrevoked tokens back after the logout.
    """

    _host_fallback_warned = False

    async def logout_tokens(self, user: Any, handler: Any) -> str | None:
        """Revoke and forget the tokens as configured; the end_session URL to redirect to."""
        auth_state = await user.get_auth_state() or {}
        id_token = auth_state.get("id_token")
        if self.should_revoke_on_logout(user) and auth_state.get("access_token"):
            await self.forget_user_tokens(user)
        if self.logout_redirect_url or not self.end_session_redirect:
            return None
        endpoint = await self.get_endpoint("end_session_endpoint")
        if not endpoint:
            return None
        return end_session_url(
            endpoint, self.client_id, id_token, self.post_logout_uri_for(handler)
        )

    async def forget_user_tokens(self, user: Any) -> None:
        """Revoke and forget whatever tokens ``user`` has stored now (takes the refresh lock)."""
        async with self._single_flight.hold(user.name):
            auth_state = await user.get_auth_state() or {}
            if auth_state.get("access_token") or auth_state.get("refresh_token"):
                await self.forget_tokens(user, auth_state)
            self.refresh_backoff.succeeded(user.name)

    async def forget_tokens(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Revoke at the provider, drop from auth_state, empty the token Secrets.

        The caller holds the user's refresh lock (a refresh, or :meth:`forget_user_tokens`).
        """
        await revoke_auth_state_tokens(self, auth_state)
        stripped = strip_tokens(auth_state)
        await user.save_auth_state(stripped)
        await self.on_tokens_refreshed(user, stripped)

    async def delete_user(self, user: Any) -> None:
        """A deleted user's tokens are revoked at the provider."""
        async with self._single_flight.hold(user.name):
            auth_state = await user.get_auth_state() or {}
            if auth_state.get("access_token") or auth_state.get("refresh_token"):
                await revoke_auth_state_tokens(self, auth_state)
                # a refresh waiting for the lock then finds nothing to refresh
                await user.save_auth_state(strip_tokens(auth_state))
            self.refresh_backoff.succeeded(user.name)
        super().delete_user(user)

    async def get_authenticated_user(self, handler: Any, data: Any) -> Any:
        """A login that replaces a user's stored grant revokes the replaced one."""
        authenticated = await super().get_authenticated_user(handler, data)
        if not authenticated or handler is None or not authenticated.get("auth_state"):
            return authenticated
        find_user = getattr(handler, "find_user", None)
        user = find_user(authenticated["name"]) if find_user is not None else None
        if user is not None:  # a first login has nothing to replace
            await self.replace_grant(user, authenticated["auth_state"])
        return authenticated

    async def replace_grant(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Store a new login's ``auth_state``; revoke the previous grant if it is another one.

        Without it every login leaves a live offline refresh token (a year on Check-in) at
        the provider. The new state is saved here, under the refresh lock, before the old
        grant is revoked: a background refresh never presents the revoked token, and one
        that ran just before has its rotated token revoked instead. The hub saves the same
        state again right after.
        """
        async with self._single_flight.hold(user.name):
            old = await user.get_auth_state() or {}
            await user.save_auth_state(auth_state)
            await self.on_tokens_refreshed(user, auth_state)
            self.refresh_backoff.succeeded(user.name)
            old_refresh = old.get("refresh_token")
            if not old_refresh or old_refresh == auth_state.get("refresh_token"):
                return  # no previous grant, or the same one
            replaced = {"refresh_token": old_refresh}
            if old.get("access_token") != auth_state.get("access_token"):
                replaced["access_token"] = old.get("access_token")
            if not await revoke_auth_state_tokens(self, replaced):
                self.log.warning("The grant %s's new login replaced was not revoked", user.name)

    def should_revoke_on_logout(self, user: Any) -> bool:
        if self.revoke_on_logout == "always":
            return True
        if self.revoke_on_logout == "never":
            return False
        return not any(s.active for s in user.spawners.values())

    def post_logout_uri_for(self, handler: Any) -> str:
        """Where the provider sends the browser after logout: the hub's public login page.

        Built from configuration (``post_logout_redirect_uri``, ``JupyterHub.public_url``,
        ``oauth_callback_url``), not from the request's Host header, which the client chooses.
        """
        if self.post_logout_redirect_uri:
            return self.post_logout_redirect_uri
        settings = getattr(handler, "settings", None) or {}
        login_url = settings.get("login_url") or "/hub/login"
        public = settings.get("public_url")
        if public and getattr(public, "netloc", ""):
            return f"{public.scheme}://{public.netloc}{login_url}"
        callback = urlsplit(self.oauth_callback_url or "")
        if callback.scheme and callback.netloc:
            return f"{callback.scheme}://{callback.netloc}{login_url}"
        if not self._host_fallback_warned:
            self._host_fallback_warned = True
            self.log.warning(
                "%s: neither post_logout_redirect_uri, JupyterHub.public_url nor"
                " oauth_callback_url is set: the post-logout redirect follows the request's"
                " Host header",
                type(self).__name__,
            )
        request = handler.request
        return f"{request.protocol}://{request.host}{login_url}"
