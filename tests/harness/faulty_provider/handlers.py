"""Machine-facing OIDC endpoints: discovery, JWKS, token, userinfo, revocation, introspection."""

from __future__ import annotations

from typing import Any

from .base import BaseHandler, OAuthError
from .tokens import SCOPES_SUPPORTED, GrantError

# Keycloak's layout under the realm: Check-in runs Keycloak, clients may hard-code these
PATHS = {
    "discovery": "/.well-known/openid-configuration",
    "authorization": "/protocol/openid-connect/auth",
    "token": "/protocol/openid-connect/token",
    "userinfo": "/protocol/openid-connect/userinfo",
    "jwks": "/protocol/openid-connect/certs",
    "revocation": "/protocol/openid-connect/revoke",
    "introspection": "/protocol/openid-connect/token/introspect",
    "end_session": "/protocol/openid-connect/logout",
}
GRANT_TYPES = ("authorization_code", "refresh_token")


def discovery_document(issuer: str, claims: set[str]) -> dict[str, Any]:
    url = {name: issuer + path for name, path in PATHS.items()}
    return {
        "issuer": issuer,
        "authorization_endpoint": url["authorization"],
        "token_endpoint": url["token"],
        "userinfo_endpoint": url["userinfo"],
        "jwks_uri": url["jwks"],
        "revocation_endpoint": url["revocation"],
        "introspection_endpoint": url["introspection"],
        "end_session_endpoint": url["end_session"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": sorted(
            claims | {"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp"}
        ),
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
        "authorization_response_iss_parameter_supported": True,
    }


class DiscoveryHandler(BaseHandler):
    endpoint = "discovery"

    def get(self) -> None:
        claims = {name for user in self.provider.config.users.values() for name in user.claims}
        self.write_json(discovery_document(self.provider.issuer, claims))


class JWKSHandler(BaseHandler):
    endpoint = "jwks"

    def get(self) -> None:
        self.write_json(self.provider.key.jwks())


class TokenHandler(BaseHandler):
    endpoint = "token"

    def count_call(self) -> None:
        grant_type = self.get_body_argument("grant_type", None) or "missing"
        self.provider.stats.grants[grant_type if grant_type in GRANT_TYPES else "other"] += 1

    def required(self, name: str) -> str:
        value = self.get_body_argument(name, None)
        if not value:
            raise OAuthError(400, "invalid_request", f"{name} is required")
        return value

    def post(self) -> None:
        client = self.authenticate_client()
        grant_type = self.get_body_argument("grant_type", None)
        stats = self.provider.stats
        try:
            if grant_type == "authorization_code":
                response = self.store.redeem_code(
                    client,
                    self.required("code"),
                    self.get_body_argument("redirect_uri", None),
                    self.get_body_argument("code_verifier", None),
                )
            elif grant_type == "refresh_token":
                refresh_token = self.required("refresh_token")
                scope = self.get_body_argument("scope", None)
                try:
                    login, response = self.store.refresh(client, refresh_token, scope)
                except GrantError as e:
                    if e.login:
                        stats.refresh_by_user[e.login] += 1
                    raise
                stats.refresh_by_user[login] += 1
            elif not grant_type:
                raise OAuthError(400, "invalid_request", "grant_type is required")
            else:
                raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant_type!r}")
        except GrantError as e:
            if e.error == "invalid_grant":
                stats.invalid_grant += 1
            raise OAuthError(400, e.error, e.description) from None
        self.write_json(response)


class UserinfoHandler(BaseHandler):
    endpoint = "userinfo"

    def userinfo(self) -> None:
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            raise OAuthError(401, "invalid_request", "", {"WWW-Authenticate": 'Bearer realm="egi"'})
        token = self.store.find(header[7:].strip(), "access")
        if token is None:
            challenge = (
                'Bearer realm="egi", error="invalid_token", '
                'error_description="expired, revoked or unknown"'
            )
            raise OAuthError(401, "invalid_token", "", {"WWW-Authenticate": challenge})
        # all the user's current claims, whatever the scope: simpler, and what tests want
        self.write_json(self.provider.config.users[token.grant.login].claims)

    get = post = userinfo


class RevocationHandler(BaseHandler):
    """RFC 7009: 200 for unknown tokens; a refresh token takes its grant's access tokens with it."""

    endpoint = "revocation"

    def post(self) -> None:
        client = self.authenticate_client()
        value = self.get_body_argument("token", None)
        if not value:
            raise OAuthError(400, "invalid_request", "token is required")
        token = self.store.tokens.get(value)
        if token is not None and token.grant.client_id != client.client_id:
            raise OAuthError(400, "unauthorized_client", "token was issued to another client")
        self.store.revoke(value)
        self.set_header("Cache-Control", "no-store")
        self.finish()


class IntrospectionHandler(BaseHandler):
    """RFC 7662: any authenticated client may introspect (as on Keycloak)."""

    endpoint = "introspection"

    def post(self) -> None:
        self.authenticate_client()
        value = self.get_body_argument("token", None)
        if not value:
            raise OAuthError(400, "invalid_request", "token is required")
        self.write_json(self.store.introspect(value))
