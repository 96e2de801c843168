"""The browser-facing endpoints: the authorization endpoint with its login form, and end_session.

The login form is plain HTML a test driver can parse: ``<form method="post" action=...>`` with
inputs ``username`` and ``password`` and hidden inputs carrying the authorization request. There
are no single-sign-on sessions: every authorization request shows the form (so ``prompt=login``
holds trivially and ``prompt=none`` answers ``login_required``).
"""

from __future__ import annotations

import hmac
import re
from html import escape

import jwt
from tornado.httputil import url_concat

from .base import BaseHandler
from .config import Client
from .tokens import SCOPES_SUPPORTED

AUTH_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)
PKCE_VALUE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main><h1>{title}</h1>
{body}
</main></body></html>
"""

LOGIN_FORM = """<p>Sign in to continue to <strong>{client}</strong>.</p>
{error}
<form id="kc-form-login" method="post" action="{action}">
{hidden}
<label for="username">Username</label>
<input id="username" name="username" value="{username}" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password">
<button type="submit" name="login" value="1">Sign in</button>
<button type="submit" name="cancel" value="1">Cancel</button>
</form>"""


class HtmlMixin:
    def html(self, status: int, title: str, body: str) -> None:
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "text/html; charset=utf-8")  # type: ignore[attr-defined]
        self.set_header("Cache-Control", "no-store")  # type: ignore[attr-defined]
        self.set_header("X-Frame-Options", "DENY")  # type: ignore[attr-defined]
        self.finish(PAGE.format(title=escape(title), body=body))  # type: ignore[attr-defined]

    def html_error(self, message: str) -> None:
        self.html(400, "Error", f'<p class="error">{escape(message)}</p>')


class AuthorizeHandler(HtmlMixin, BaseHandler):
    endpoint = "authorization"

    def redirect_error(self, redirect_uri: str, state: str | None, error: str, why: str) -> None:
        args = {"error": error, "error_description": why, "iss": self.provider.issuer}
        if state is not None:
            args["state"] = state
        self.redirect(url_concat(redirect_uri, args))

    def handle(self) -> None:
        p = {name: self.get_argument(name, None) for name in AUTH_PARAMS}
        client = self.provider.config.clients.get(p["client_id"] or "")
        if client is None:
            return self.html_error("Unknown client_id.")
        redirect_uri = p["redirect_uri"]
        # never redirect anywhere that is not registered, exactly: show the error instead
        if not redirect_uri or redirect_uri not in client.redirect_uris:
            return self.html_error("Invalid redirect_uri: it is not registered for this client.")
        state = p["state"]
        if p["response_type"] != "code":
            return self.redirect_error(
                redirect_uri, state, "unsupported_response_type", "only response_type=code"
            )
        requested = (p["scope"] or "").split()
        if "openid" not in requested:
            return self.redirect_error(redirect_uri, state, "invalid_scope", "openid is required")
        challenge, method = p["code_challenge"], p["code_challenge_method"]
        if challenge:
            method = method or "plain"  # RFC 7636 §4.3
            if method not in ("S256", "plain"):
                return self.redirect_error(
                    redirect_uri, state, "invalid_request", "unsupported code_challenge_method"
                )
            if not PKCE_VALUE.match(challenge):
                return self.redirect_error(
                    redirect_uri, state, "invalid_request", "malformed code_challenge"
                )
        elif method:
            return self.redirect_error(
                redirect_uri, state, "invalid_request", "code_challenge_method without challenge"
            )
        if "none" in (p["prompt"] or "").split():
            return self.redirect_error(redirect_uri, state, "login_required", "no session")
        if self.request.method != "POST" or self.get_body_argument("username", None) is None:
            return self.login_form(client, p)
        if self.get_body_argument("cancel", None):
            return self.redirect_error(redirect_uri, state, "access_denied", "cancelled")
        login = self.get_body_argument("username")
        password = self.get_body_argument("password", "")
        user = self.provider.config.users.get(login)
        if user is None or not hmac.compare_digest(password.encode(), user.password.encode()):
            return self.login_form(client, p, login, "Invalid username or password.")
        # unknown scopes are dropped, as Check-in does; order kept, duplicates removed
        scope = " ".join(dict.fromkeys(s for s in requested if s in SCOPES_SUPPORTED))
        code = self.store.issue_code(
            client.client_id, redirect_uri, login, scope, p["nonce"], challenge, method
        )
        args = {"code": code, "iss": self.provider.issuer}
        if state is not None:
            args["state"] = state
        self.redirect(url_concat(redirect_uri, args))

    def login_form(
        self, client: Client, params: dict[str, str | None], username: str = "", error: str = ""
    ) -> None:
        hidden = "\n".join(
            f'<input type="hidden" name="{name}" value="{escape(value)}">'
            for name, value in params.items()
            if value is not None
        )
        body = LOGIN_FORM.format(
            client=escape(client.client_id),
            error=f'<p class="error" id="input-error">{escape(error)}</p>' if error else "",
            action=escape(self.request.path),
            hidden=hidden,
            username=escape(username),
        )
        self.html(200, "Sign in", body)

    get = post = handle


class EndSessionHandler(HtmlMixin, BaseHandler):
    """RP-initiated logout 1.0: redirect only to a registered post_logout_redirect_uri."""

    endpoint = "end_session"

    def handle(self) -> None:
        hint = self.get_argument("id_token_hint", None)
        client_id = self.get_argument("client_id", None)
        target = self.get_argument("post_logout_redirect_uri", None)
        state = self.get_argument("state", None)
        if hint:
            try:
                claims = self.provider.key.verify_id_token(hint, self.provider.issuer)
            except jwt.InvalidTokenError:
                return self.html_error("Invalid id_token_hint.")
            aud = claims["aud"]
            hinted = aud if isinstance(aud, str) else (aud[0] if aud else "")
            if client_id and client_id != hinted:
                return self.html_error("client_id does not match the id_token_hint.")
            client_id = hinted
        if target:
            client = self.provider.config.clients.get(client_id or "")
            if client is None:
                return self.html_error(
                    "post_logout_redirect_uri needs a valid id_token_hint or client_id."
                )
            if target not in client.post_logout_redirect_uris:
                return self.html_error("post_logout_redirect_uri is not registered for the client.")
            return self.redirect(url_concat(target, {"state": state} if state else {}))
        self.html(200, "Signed out", '<p id="signed-out">You are signed out.</p>')

    get = post = handle
