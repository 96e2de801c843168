"""Authorization codes, access and refresh tokens, id_tokens: the provider's state.

Everything runs on the single tornado event loop, so there is no locking. A *grant* is one
login of one user for one client; every token carries its grant so that code reuse and refresh
token revocation can kill the tokens "based on the same authorization grant" (RFC 7009 §2.1).
Validity is ``time.time() < exp`` with no clock tolerance: tests with 1 s lifetimes are exact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .config import Client, ProviderConfig
from .keys import SigningKey

SCOPES_SUPPORTED = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "eduperson_entitlement",
    "entitlements",  # Check-in's successor of eduperson_entitlement (claim and scope)
    "voperson_id",
]
# Codes stay known this long after expiry so that a late reuse still revokes the grant.
USED_CODE_MEMORY = 600


class GrantError(Exception):
    """An OAuth error answered with HTTP 400 by the token endpoint."""

    def __init__(self, error: str, description: str, login: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.login = login


@dataclass
class Grant:
    grant_id: str
    login: str
    client_id: str
    scope: str
    auth_time: int
    access_tokens: set[str] = field(default_factory=set)
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    login: str
    scope: str
    nonce: str | None
    challenge: str | None
    method: str | None
    auth_time: int
    exp: float
    used: bool = False
    grant: Grant | None = None


@dataclass
class Token:
    kind: str  # "access" or "refresh"
    grant: Grant
    scope: str
    iat: float
    exp: float


def _json_number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def pkce_matches(method: str, challenge: str, verifier: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(verifier.encode(), challenge.encode())


class TokenStore:
    def __init__(self, config: ProviderConfig, key: SigningKey, issuer: str) -> None:
        self.config = config
        self.settings = config.settings  # shared with the admin API: changes apply to new tokens
        self.key = key
        self.issuer = issuer
        self.codes: dict[str, AuthCode] = {}
        self.tokens: dict[str, Token] = {}
        # rotated-out refresh tokens -> (login, exp): reuse is refused and counted per user
        self.retired: dict[str, tuple[str, float]] = {}

    # -- codes ---------------------------------------------------------------------------------
    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        login: str,
        scope: str,
        nonce: str | None,
        challenge: str | None,
        method: str | None,
    ) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthCode(
            client_id=client_id,
            redirect_uri=redirect_uri,
            login=login,
            scope=scope,
            nonce=nonce,
            challenge=challenge,
            method=method,
            auth_time=int(time.time()),
            exp=time.time() + self.settings["code_lifetime"],
        )
        return code

    def redeem_code(
        self, client: Client, code: str, redirect_uri: str | None, verifier: str | None
    ) -> dict[str, Any]:
        entry = self.codes.get(code)
        if entry is None or entry.client_id != client.client_id:
            raise GrantError("invalid_grant", "unknown authorization code")
        if entry.used:
            # RFC 6749 §4.1.2: a second use must fail and SHOULD revoke what the first issued
            if entry.grant is not None:
                self.revoke_grant(entry.grant)
            raise GrantError("invalid_grant", "authorization code already used", entry.login)
        entry.used = True  # one attempt per code, even a failed one
        if time.time() >= entry.exp:
            raise GrantError("invalid_grant", "authorization code expired", entry.login)
        if redirect_uri != entry.redirect_uri:
            raise GrantError("invalid_grant", "redirect_uri differs from the authorization request")
        if entry.challenge is not None:
            if not verifier:
                raise GrantError("invalid_grant", "code_verifier required (PKCE)")
            if not pkce_matches(entry.method or "plain", entry.challenge, verifier):
                raise GrantError("invalid_grant", "code_verifier does not match code_challenge")
        elif verifier:
            raise GrantError("invalid_grant", "code_verifier sent but no code_challenge was")
        user = self.config.users.get(entry.login)
        if user is None:
            raise GrantError("invalid_grant", "the user no longer exists")
        grant = Grant(
            grant_id=secrets.token_hex(8),
            login=entry.login,
            client_id=client.client_id,
            scope=entry.scope,
            auth_time=entry.auth_time,
        )
        entry.grant = grant
        return self._token_response(grant, grant.scope, nonce=entry.nonce)

    # -- refresh ---------------------------------------------------------------------------------
    def refresh(self, client: Client, value: str, scope: str | None) -> tuple[str, dict[str, Any]]:
        """(login, token response) for a refresh grant; the presented token is rotated out."""
        token = self.tokens.get(value)
        if token is None or token.kind != "refresh":
            retired = self.retired.get(value)
            login = retired[0] if retired else None
            raise GrantError("invalid_grant", "refresh token unknown, used or revoked", login)
        grant = token.grant
        if grant.client_id != client.client_id:
            raise GrantError("invalid_grant", "refresh token was issued to another client")
        if not self.is_live(token):
            raise GrantError("invalid_grant", "refresh token expired or revoked", grant.login)
        granted = grant.scope
        if scope:
            wanted = scope.split()
            if not set(wanted) <= set(grant.scope.split()):
                raise GrantError("invalid_scope", "scope exceeds the original grant", grant.login)
            granted = " ".join(wanted)
        # rotation: the presented token is spent whatever happens next
        del self.tokens[value]
        self.retired[value] = (grant.login, token.exp)
        grant.refresh_token = None
        return grant.login, self._token_response(grant, granted, nonce=None)

    # -- issuing ---------------------------------------------------------------------------------
    def _token_response(self, grant: Grant, scope: str, nonce: str | None) -> dict[str, Any]:
        now = time.time()
        lifetime = self.settings["access_token_lifetime"]
        access = self._new_access_token(grant, scope, now, now + lifetime)
        response: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": _json_number(lifetime),
            "scope": scope,
            "id_token": self.id_token(grant, now, nonce),
        }
        if "offline_access" in grant.scope.split():
            refresh_lifetime = self.settings["refresh_token_lifetime"]
            value = secrets.token_urlsafe(48)
            self.tokens[value] = Token("refresh", grant, grant.scope, now, now + refresh_lifetime)
            grant.refresh_token = value
            response["refresh_token"] = value
            response["refresh_expires_in"] = _json_number(refresh_lifetime)
        return response

    def _new_access_token(self, grant: Grant, scope: str, iat: float, exp: float) -> str:
        if self.settings["jwt_access_tokens"]:
            user = self.config.users[grant.login]
            claims = {
                "iss": self.issuer,
                "sub": user.claims["sub"],
                "aud": grant.client_id,
                "client_id": grant.client_id,
                "scope": scope,
                "iat": int(iat),
                # floor: a verifier of the JWT never thinks it lives longer than it does here
                "exp": int(exp),
                "jti": secrets.token_hex(16),
            }
            value = self.key.sign(claims, typ="at+jwt")
        else:
            value = secrets.token_urlsafe(32)
        self.tokens[value] = Token("access", grant, scope, iat, exp)
        grant.access_tokens.add(value)
        return value

    def id_token(self, grant: Grant, now: float, nonce: str | None) -> str:
        # the user's CURRENT claims: tests change them at run time and expect the next token to tell
        user = self.config.users[grant.login]
        hidden = set(self.settings["userinfo_only_claims"])
        claims = {name: value for name, value in user.claims.items() if name not in hidden}
        claims.update(
            iss=self.issuer,
            aud=grant.client_id,
            azp=grant.client_id,
            iat=int(now),
            exp=int(now) + math.ceil(self.settings["id_token_lifetime"]),
            auth_time=grant.auth_time,
        )
        claims.pop("nonce", None)
        if nonce:
            claims["nonce"] = nonce
        return self.key.sign(claims)

    # -- lookup, revocation ------------------------------------------------------------------------
    def is_live(self, token: Token) -> bool:
        return (
            not token.grant.revoked
            and time.time() < token.exp
            and token.grant.login in self.config.users
        )

    def find(self, value: str, kind: str | None = None) -> Token | None:
        token = self.tokens.get(value)
        if token is None or (kind and token.kind != kind) or not self.is_live(token):
            return None
        return token

    def revoke_grant(self, grant: Grant) -> None:
        grant.revoked = True
        for value in list(grant.access_tokens):
            self.tokens.pop(value, None)
        grant.access_tokens.clear()
        if grant.refresh_token:
            self.tokens.pop(grant.refresh_token, None)
            grant.refresh_token = None

    def revoke(self, value: str) -> None:
        """Revoke one token; a refresh token takes its grant's access tokens with it."""
        token = self.tokens.get(value)
        if token is None:
            return
        if token.kind == "refresh":
            self.revoke_grant(token.grant)
        else:
            del self.tokens[value]
            token.grant.access_tokens.discard(value)

    def introspect(self, value: str) -> dict[str, Any]:
        token = self.find(value)
        if token is None:
            return {"active": False}
        grant = token.grant
        return {
            "active": True,
            "scope": token.scope,
            "client_id": grant.client_id,
            "username": grant.login,
            "token_type": "Bearer" if token.kind == "access" else "Refresh",
            "exp": int(token.exp),
            "iat": int(token.iat),
            "sub": self.config.users[grant.login].claims["sub"],
            "aud": grant.client_id,
            "iss": self.issuer,
        }

    def live_counts(self, login: str) -> dict[str, int]:
        counts = {"access": 0, "refresh": 0}
        for token in self.tokens.values():
            if token.grant.login == login and self.is_live(token):
                counts[token.kind] += 1
        return counts

    def drop_user(self, login: str) -> None:
        for token in list(self.tokens.values()):
            if token.grant.login == login:
                self.revoke_grant(token.grant)

    def prune(self) -> None:
        """Forget expired state (called periodically) so a long test run stays small."""
        now = time.time()
        for code, entry in list(self.codes.items()):
            if now >= entry.exp + USED_CODE_MEMORY:
                del self.codes[code]
        for value, token in list(self.tokens.items()):
            if now >= token.exp:
                del self.tokens[value]
                token.grant.access_tokens.discard(value)
        for value, (_, exp) in list(self.retired.items()):
            if now >= exp:
                del self.retired[value]
