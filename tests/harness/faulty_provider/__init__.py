"""A local OpenID Connect provider standing in for EGI Check-in, for fault-injection tests.

The demo and the happy-path tests use the certified npm ``oidc-provider``
(``devtools/oidc-provider/checkin.mjs``); this one stays in the test harness, out of the
package, so that no token issuer ships in the wheel. Run it from the repository root with
``python -m tests.harness.faulty_provider --port PORT --config CONFIG.json``. It listens on
127.0.0.1 only (``--port 0`` picks a free port) and prints ``provider ready at <issuer>`` once
listening, where the issuer is ``http://127.0.0.1:PORT<realm_path>``. Only tornado, pyjwt and
cryptography are needed.

Configuration (JSON; ``clients`` and ``users`` are required, the rest optional)::

    {"realm_path": "/auth/realms/egi",      # issuer path, Keycloak-like as on Check-in
     "access_token_lifetime": 3600,          # seconds (numbers > 0; floats allowed)
     "refresh_token_lifetime": 86400,
     "id_token_lifetime": 3600,
     "code_lifetime": 60,                    # authorization codes
     "jwt_access_tokens": false,             # true: RS256 JWT access tokens (typ at+jwt)
     "userinfo_only_claims": [],             # claims kept out of id_tokens (Check-in: entitlements)
     "admin_token": "...",                   # enables /_admin/ (absent: 404 there)
     "signing_key_file": "key.pem",          # RSA PEM; absent: a 2048-bit key made at start
     "clients": [{"client_id": "hub", "client_secret": "...",
                  "redirect_uris": ["http://127.0.0.1:8000/hub/oauth_callback"],
                  "post_logout_redirect_uris": ["http://127.0.0.1:8000/hub/login"]}],
     "users": {"alice": {"password": "alice",
                         "claims": {"sub": "...", "voperson_id": "alice@egi.eu", ...}}}}

Entitlements are whatever claims the users have: ``eduperson_entitlement``, its successor
``entitlements``, both or neither (Check-in leaves the claim out when a user has none); the demo
users (``egi_notebooks.demo.accounts``) carry ``eduperson_entitlement`` unless asked for other
claim names. A user without ``sub`` gets a stable one derived from the login.

Endpoints under the issuer (Keycloak paths): ``/.well-known/openid-configuration``,
``/protocol/openid-connect/auth`` (login form), ``.../token`` (authorization_code with PKCE
S256/plain, refresh_token with rotation: a used refresh token answers ``invalid_grant``;
client_secret_basic and client_secret_post; an id_token from the user's current claims on both
grants; a refresh token only when ``offline_access`` was granted), ``.../userinfo``,
``.../certs`` (JWKS), ``.../revoke`` (RFC 7009), ``.../token/introspect`` (RFC 7662),
``.../logout`` (RP-initiated logout). Tokens are invalid from the exact second of expiry: there
is no clock tolerance.

Admin API (``Authorization: Bearer <admin_token>``), outside the issuer path:

- ``GET|PUT|PATCH|DELETE /_admin/users/<login>``: PUT ``{"claims": {...}, "password": ...}``
  replaces the claims (``sub`` kept unless given) or creates the user (password required);
  PATCH merges claims (null removes one); DELETE removes the user and revokes its tokens.
- ``PATCH /_admin/clients/<client_id>``: ``{"client_secret": ...}`` rotates the secret; a client
  sending the old one gets ``invalid_client`` (issued tokens stay valid).
- ``GET /_admin/tokens/<login>``: ``{"access": n, "refresh": n}`` live tokens.
- ``GET /_admin/stats``, ``POST /_admin/stats/reset``: calls per endpoint, ``token`` per grant
  type, ``refresh_by_user``, ``invalid_grant``, ``faulted``.
- ``GET|PUT /_admin/settings``: the lifetimes, ``jwt_access_tokens`` and ``userinfo_only_claims``
  (for new tokens).
- ``GET|PUT /_admin/fault``: ``{"mode": "none"|"down"|"slow"|"garbage"|"html500", "delay": s,
  "endpoints": [...], "count": n}`` on the named OIDC endpoints (default all; never /_admin):
  ``down`` drops the connection unanswered, ``slow`` answers normally after ``delay``,
  ``garbage`` is a 200 ``application/json`` response whose body is not JSON, ``html500`` a 500
  HTML page. ``delay`` also precedes the other modes; ``count`` ends the fault after n calls.
  Endpoint names: discovery, jwks, authorization, token, userinfo, revocation,
  introspection, end_session.
"""

from .app import main

__all__ = ["main"]
