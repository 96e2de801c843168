"""The login redirect (waits for discovery, adds an OpenID Connect nonce) and the callback."""

from __future__ import annotations

import secrets
from typing import Any

from oauthenticator.oauth2 import (
    OAuthCallbackHandler,
    OAuthLoginHandler,
    _deserialize_state,
    _serialize_state,
)
from tornado import web
from tornado.httputil import url_concat
from tornado.log import app_log

from .discovery import DiscoveryError


def nonce_from_state_cookie(handler: web.RequestHandler) -> str | None:
    """The nonce the login handler put into the state cookie (callback side)."""
    get_state_cookie = getattr(handler, "get_state_cookie", None)
    if get_state_cookie is None:
        return None
    return _deserialize_state(get_state_cookie() or "").get("nonce")


class EGILoginHandler(OAuthLoginHandler):
    async def get(self) -> None:
        try:
            await self.authenticator.ensure_endpoints()
        except DiscoveryError:
            # the reason is in the log (discovery logs it once); the page says what it means
            raise web.HTTPError(
                503,
                f"Sign-in with {self.authenticator.login_service} is unavailable right now:"
                " the identity provider's configuration could not be loaded."
                " Please try again in a few minutes.",
            ) from None
        self.oauth_redirect()

    def oauth_redirect(self) -> None:
        # Upstream OAuthLoginHandler.get (oauthenticator 17) builds its state in a local
        # variable with no hook; this is that method plus the nonce (OIDC Core 3.1.2.1).
        # tests/unit/auth/test_upstream_contract.py fails if upstream's shape changes.
        redirect_uri = self.authenticator.get_callback_url(self)
        params = self.authenticator.extra_authorize_params.copy()
        state = {"state_id": self._generate_state_id(), "next_url": self._get_next_url()}
        if self.authenticator.enable_pkce:
            verifier, challenge = self._generate_pkce_params()
            state["code_verifier"] = verifier
            params["code_challenge"] = challenge
            params["code_challenge_method"] = "S256"
        if self.authenticator.use_nonce:
            state["nonce"] = params["nonce"] = secrets.token_urlsafe(24)
        self.set_state_cookie(_serialize_state(state))
        params["state"] = _serialize_state({"state_id": state["state_id"]})
        self.authorize_redirect(
            redirect_uri=redirect_uri,
            client_id=self.authenticator.client_id,
            scope=self.authenticator.scope,
            extra_params=params,
            response_type="code",
        )


class EGICallbackHandler(OAuthCallbackHandler):
    """The OAuth callback, whose error lines never carry the request's query string.

    ``/hub/oauth_callback?code=...&state=...``: tornado names the request URI when it logs a
    failed request (``log_exception``), and the authorization code and state are in it.
    JupyterHub's access line already hides them.
    """

    def check_error(self) -> None:
        # A sign-in cancelled at the provider is the user's choice, not an error: back to the
        # login page (which shows a notice for ``cancelled``), keeping where they were going.
        if self.get_argument("error", "") == "access_denied":
            params = {"cancelled": "1"}
            next_url = _deserialize_state(self.get_state_cookie() or "").get("next_url")
            if next_url:
                params["next"] = next_url
            self.redirect(url_concat(self.settings["login_url"], params))
            raise web.Finish()
        super().check_error()

    def _request_summary(self) -> str:
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)  # uses _request_summary
            return
        # tornado's version adds repr(request), which holds the URI
        app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))
