"""``GET /hub/jwt_login``: a hub API token for the holder of a Check-in access token.

egi-notebooks-hub's path, kept for its clients. The caller sends
``Authorization: Bearer <access token>``; the answer is ``{"token": ..., "user": ...}``.

The access token is verified before anything is believed: a JWT by its signature (the
provider's JWKS), ``iss``, ``exp`` and ``aud``/``azp``; an opaque one by the provider's
introspection endpoint (``active``, ``iss``, ``exp``, ``client_id``/``aud``). Tokens issued to
the hub's own client are refused unless ``jwt_login_accept_hub_client_tokens``: they are what
the hub hands to every notebook, for other APIs. The user's claims then go through the same VO
authorization as a browser login, and the user is created if new.

The hub token's value is an HMAC of the access token under the hub's cookie secret: the same
access token always maps to the same hub token, so repeated calls reuse it (no pile-up, and
the token itself is stored nowhere but as the hub's salted hash). It expires with the access
token at the latest, and ends before when the access token ends earlier: :class:`JWTLoginChecker`
introspects each live hub token's access token (kept in the user's encrypted ``auth_state``
under ``jwt_login_bearers``) every ``jwt_login_check_interval`` seconds, and a logout that
revokes the user's tokens deletes them (:func:`end_jwt_logins`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any

import jwt
from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .background import LoopTask
from .discovery import ALLOWED_ID_TOKEN_ALGS, DiscoveryError, IdTokenError
from .logout import revoke_auth_state_tokens
from .refresh import ClientAuthError, InvalidGrant, ProviderError

JWT_LOGIN_PATH = r"/jwt_login"
# the scopes of a hub token from jwt_login unless configured: the user's own servers
# (start, stop, reach them) and reading their own model
DEFAULT_JWT_LOGIN_SCOPES = ["servers!user", "access:servers!user", "read:users!user"]
TOKEN_NOTE_PREFIX = "jwt_login "
# auth_state key: fingerprint -> {"token", "expires_at", "introspect"} of the access tokens
# whose hub tokens are live (credentials: encrypted with auth_state, dropped at logout)
BEARERS_KEY = "jwt_login_bearers"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
# Check-in's access tokens have about 1,400 characters; anything far longer is not one
MAX_ACCESS_TOKEN_LENGTH = 16_000
# RFC 9068 JWT access tokens say so in the header; Keycloak's (Check-in) in a claim
JWT_ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
# the hub's own token reuse margin: a token about to expire is not handed out again
REUSE_MARGIN_SECONDS = 5


class BearerError(web.HTTPError):
    """401 with ``WWW-Authenticate: Bearer`` (RFC 6750) and a message for the caller."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(401, message)
        self.jupyterhub_message = message
        self.headers = {"WWW-Authenticate": f'Bearer error="{error}"'}


class NotIntrospectable(BearerError):
    """The provider does not introspect this kind of token (oidc-provider: its JWTs)."""

    def __init__(self) -> None:
        super().__init__("The provider cannot introspect this access token.")


def token_fingerprint(access_token: str) -> str:
    """A short SHA-256 fingerprint of an access token (for notes and logs; never the token)."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


def derived_hub_token(secret: bytes, access_token: str) -> str:
    """The hub token that belongs to ``access_token`` (HMAC-SHA256 under ``secret``)."""
    mac = hmac.new(secret, b"egi-notebooks jwt_login\0" + access_token.encode(), hashlib.sha256)
    return mac.hexdigest()


def is_jwt(token: str) -> bool:
    """Whether ``token`` has the shape of a compact JWS (an opaque token has not)."""
    if token.count(".") != 2:
        return False
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    return isinstance(header.get("alg"), str)


def audiences_of(claims: dict[str, Any]) -> set[str]:
    """The token's ``aud`` as a set (a string or a list of strings)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return {aud}
    if isinstance(aud, list):
        return {a for a in aud if isinstance(a, str)}
    return set()


def audience_ok(claims: dict[str, Any], audiences: set[str]) -> bool:
    """Whether the token is meant for the hub: its ``aud`` names one of ``audiences``; a token
    without ``aud`` counts by the client it was issued to (``azp``/``client_id``).

    A token whose ``aud`` names other APIs only is theirs, whoever it was issued to: an API
    that received it could otherwise replay it here.
    """
    auds = audiences_of(claims)
    if auds:
        return bool(auds & audiences)
    return any(claims.get(name) in audiences for name in ("azp", "client_id"))


def issued_to(claims: dict[str, Any], client_id: str) -> bool:
    """Whether the token was issued to ``client_id`` (its ``azp`` or ``client_id``); a token
    that names no client and whose ``aud`` is ``client_id`` alone cannot be told apart from
    one, so it counts as one."""
    named = [claims.get(name) for name in ("azp", "client_id")]
    named = [n for n in named if isinstance(n, str) and n]
    if named:
        return client_id in named
    return audiences_of(claims) == {client_id}


def live_bearers(entries: Any, now: float | None = None) -> dict[str, dict[str, Any]]:
    """The well-formed, unexpired entries of an auth_state's ``jwt_login_bearers``."""
    now = time.time() if now is None else now
    if not isinstance(entries, dict):
        return {}
    return {
        fp: entry
        for fp, entry in entries.items()
        if isinstance(entry, dict)
        and isinstance(entry.get("token"), str)
        and isinstance(entry.get("expires_at"), int | float)
        and entry["expires_at"] > now
    }


async def introspect_token(authenticator: Any, access_token: str, log: Any) -> dict[str, Any]:
    """The provider's introspection answer for an active access token of its own.

    Raises :class:`BearerError` (inactive, another issuer) or ``HTTPError(503)`` (no
    introspection, provider unreachable or refusing the hub's client).
    """
    url = await authenticator.get_endpoint("introspection_endpoint")
    if not url:
        raise web.HTTPError(503, f"{authenticator.login_service} offers no token introspection.")
    body = {"token": access_token, "token_type_hint": "access_token"}
    response = await authenticator.post_as_client(
        url, body, "asking the provider about a bearer token"
    )
    if response.code == 599 or response.code >= 500:
        raise web.HTTPError(503, f"{authenticator.login_service} did not answer; try again.")
    try:
        answer = json.loads(response.body or b"null")
    except ValueError:
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if response.code in (401, 403) or error == "invalid_client":
        authenticator.log_client_rejected(
            ClientAuthError(f"introspection: HTTP {response.code} {error or ''}".strip())
        )
        raise web.HTTPError(503, "Token introspection is misconfigured; contact the operators.")
    if error == "unsupported_token_type":
        raise NotIntrospectable()
    if response.code != 200 or not isinstance(answer, dict):
        # the provider's error code only: its description may quote the token
        log.warning("jwt_login: introspection answered HTTP %s %s", response.code, error or "")
        raise web.HTTPError(503, f"{authenticator.login_service} answered unusably.")
    if answer.get("active") is not True:
        raise BearerError("The access token is not active (expired or revoked).")
    iss = answer.get("iss")
    if iss is not None and iss.rstrip("/") != authenticator.metadata.issuer:
        raise BearerError("The access token is from another issuer.")
    return answer


def _jwt_login_tokens(orm_user: Any) -> list[Any]:
    return [t for t in orm_user.api_tokens if (t.note or "").startswith(TOKEN_NOTE_PREFIX)]


async def end_jwt_logins(authenticator: Any, user: Any) -> int:
    """Delete ``user``'s jwt_login hub tokens and forget their access tokens: how many.

    For a logout that revokes the user's tokens: the API logins end with it.
    """
    orm_user = getattr(user, "orm_user", None)  # None: a stand-in without a database row
    tokens = _jwt_login_tokens(orm_user) if orm_user is not None else []
    for orm_token in tokens:
        user.db.delete(orm_token)
    if tokens:
        user.db.commit()
    async with authenticator._single_flight.hold(user.name):
        state = await user.get_auth_state()
        if state and BEARERS_KEY in state:
            state.pop(BEARERS_KEY)
            await user.save_auth_state(state)
    if tokens:
        authenticator.log.info("jwt_login: %d hub token(s) of %s ended", len(tokens), user.name)
    return len(tokens)


class JWTLoginChecker(LoopTask):
    """Ends a jwt_login hub token soon after its access token stops being active at the
    provider (revoked, the user's session ended there): every ``interval`` seconds, one
    introspection per live jwt_login hub token (``concurrency`` at once, all users).

    A hub token whose access token the hub has no record of is ended too (it could not be
    checked; the caller logs in again). A JWT access token that the provider does not
    introspect (found at login) cannot be revoked there either: its hub token ends at expiry.
    While the provider cannot be asked, hub tokens stay and are checked at the next pass.
    """

    def __init__(
        self,
        authenticator: Any,
        app: Any,
        interval: float,
        log: logging.Logger,
        concurrency: int = 10,
    ) -> None:
        self.authenticator = authenticator
        self.app = app
        self.interval = interval
        self.log = log
        self.semaphore = asyncio.Semaphore(max(1, concurrency))
        self.ended = 0

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("jwt_login: checking hub tokens failed; retrying")
            await asyncio.sleep(self.interval)  # the period of the checks, not a wait

    def live_tokens(self) -> dict[int, list[Any]]:
        """user id -> the user's unexpired jwt_login hub tokens."""
        db = self.app.db
        now = time.time()
        query = db.query(orm.APIToken).filter(
            orm.APIToken.note.like(TOKEN_NOTE_PREFIX + "%"), orm.APIToken.user_id.isnot(None)
        )
        by_user: dict[int, list[Any]] = defaultdict(list)
        for orm_token in query:
            if (_utc(orm_token.expires_at) or float("inf")) > now:
                by_user[orm_token.user_id].append(orm_token)
        return by_user

    async def tick(self) -> None:
        """One pass over every user with live jwt_login hub tokens."""
        by_user = self.live_tokens()
        await asyncio.gather(
            *(self.check_user(self.app.users[uid], tokens) for uid, tokens in by_user.items())
        )

    async def bearer_active(self, entry: dict[str, Any]) -> bool | None:
        """Whether the provider still holds the access token active (None: cannot tell)."""
        if not entry.get("introspect", True):
            return True  # a JWT the provider does not introspect: good until expiry
        async with self.semaphore:
            try:
                await introspect_token(self.authenticator, entry["token"], self.log)
            except NotIntrospectable:
                return None
            except BearerError:
                return False
            except (web.HTTPError, DiscoveryError):
                return None
            return True

    async def check_user(self, user: Any, tokens: list[Any]) -> None:
        state = await user.get_auth_state() or {}
        bearers = live_bearers(state.get(BEARERS_KEY))
        fingerprints = [t.note[len(TOKEN_NOTE_PREFIX) :] for t in tokens]
        known = [fp for fp in fingerprints if fp in bearers]
        answers = await asyncio.gather(*(self.bearer_active(bearers[fp]) for fp in known))
        dead = {fp for fp, active in zip(known, answers, strict=True) if active is False}
        unknown = {fp for fp in fingerprints if fp not in bearers}
        ended = [t for t, fp in zip(tokens, fingerprints, strict=True) if fp in dead | unknown]
        if not ended:
            return
        for orm_token in ended:
            user.db.delete(orm_token)
        user.db.commit()
        self.ended += len(ended)
        for fp in sorted(dead):
            self.log.info(
                "jwt_login: access token %s of %s is no longer active: its hub token ended",
                fp,
                user.name,
            )
        for fp in sorted(unknown):
            self.log.info(
                "jwt_login: no record of access token %s of %s: its hub token ended", fp, user.name
            )
        if dead:
            async with self.authenticator._single_flight.hold(user.name):
                state = await user.get_auth_state() or {}
                entries = live_bearers(state.get(BEARERS_KEY))
                state[BEARERS_KEY] = {fp: e for fp, e in entries.items() if fp not in dead}
                await user.save_auth_state(state)


def _utc(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class JWTLoginHandler(APIHandler):
    """Exchange a Check-in access token for a hub API token (see the module docstring)."""

    # authenticated by the Check-in token alone: the hub's own cookie and token lookups
    # would read the bearer token as a hub token
    def get_current_user_token(self) -> None:
        return None

    def get_current_user_cookie(self) -> None:
        return None

    def check_xsrf_cookie(self) -> None:
        return None  # no cookie authentication here

    def _request_summary(self) -> str:
        return f"{self.request.method} {self.request.path}"  # no query string in logs

    @property
    def authn(self) -> Any:
        return self.authenticator

    async def get(self) -> None:
        authenticator = self.authn
        if not getattr(authenticator, "jwt_login_enabled", False):
            raise web.HTTPError(404)
        access_token = self._bearer()
        try:
            await authenticator.ensure_endpoints()
        except DiscoveryError as e:
            raise web.HTTPError(503, f"{authenticator.login_service} cannot be reached.") from e
        claims = await self.verify_access_token(access_token)
        expires_at = float(claims["exp"])
        remaining = int(expires_at - time.time())
        if remaining < 1:
            raise BearerError("The access token has expired.")
        token_info: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": remaining,
        }
        if isinstance(claims.get("scope"), str):
            token_info["scope"] = claims["scope"]
        exchanged = await self.exchange(access_token, claims)
        if exchanged is not None:
            token_info = exchanged
        try:
            authenticated = await self.auth_model(token_info, claims)
        except web.HTTPError:
            if exchanged is not None:
                # a user the hub refuses keeps no offline grant from the exchange
                await revoke_auth_state_tokens(authenticator, exchanged)
            raise
        # one jwt_login of a user at a time: each reads and extends what the last one stored
        async with self.authn._jwt_login_flight.hold(authenticated["name"]):
            user = await self.store_user(authenticated)
            checkable = await self.introspectable(access_token)
            token, token_expires_at = await self.hub_token(user, access_token, remaining, checkable)
        self.log.info(
            "jwt_login: hub token for %s (access token %s, expires in %d s)",
            user.name,
            token_fingerprint(access_token),
            int(token_expires_at - time.time()),
        )
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {
                    "token": token,
                    "expires_at": token_expires_at,
                    "user": {
                        "kind": "user",
                        "name": user.name,
                        "admin": bool(user.admin),
                        "groups": sorted(g.name for g in user.groups),
                    },
                }
            )
        )

    # ---- the access token ---------------------------------------------------------------
    def _bearer(self) -> str:
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise BearerError(
                "Send the access token as 'Authorization: Bearer <token>'.", "invalid_request"
            )
        if len(value) > MAX_ACCESS_TOKEN_LENGTH:
            raise BearerError("The access token is not valid.")
        return value

    @property
    def audiences(self) -> set[str]:
        configured = set(self.authn.jwt_login_audiences)
        return configured or {self.authn.client_id}

    async def verify_access_token(self, access_token: str) -> dict[str, Any]:
        """The token's verified claims (``sub`` and ``exp`` at least); 401 when invalid."""
        if is_jwt(access_token):
            claims = await self.verify_jwt(access_token)
        else:
            claims = await self.introspect(access_token)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise BearerError("The access token names no subject.")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise BearerError("The access token has no expiry.")
        if not audience_ok(claims, self.audiences):
            raise BearerError("The access token was not issued for this hub.")
        if not self.authn.jwt_login_accept_hub_client_tokens and issued_to(
            claims, self.authn.client_id
        ):
            # the hub's own tokens are what it hands to every notebook (for other APIs):
            # whoever a notebook passed one to must not become the user here
            raise BearerError(
                "The access token was issued to the hub itself; log in with a token of"
                " your own client (see the hub's API documentation)."
            )
        return claims

    async def verify_jwt(self, access_token: str) -> dict[str, Any]:
        metadata = self.authn.metadata
        header = jwt.get_unverified_header(access_token)
        alg = header.get("alg")
        if alg not in ALLOWED_ID_TOKEN_ALGS:
            raise BearerError(f"Access tokens signed with {alg!r} are not accepted.")
        try:
            key = await self._signing_key(header.get("kid"), alg)
        except IdTokenError as e:
            self.log.warning("jwt_login: %s", e)
            raise BearerError("The access token is not signed by a known key.") from e
        try:
            claims = jwt.decode(
                access_token,
                key=key,
                algorithms=[alg],
                issuer=metadata.issuer,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as e:
            raise BearerError("The access token has expired.") from e
        except jwt.InvalidIssuerError as e:
            raise BearerError("The access token is from another issuer.") from e
        except jwt.PyJWTError as e:
            raise BearerError(f"The access token is not valid: {e}.") from e
        # an id_token is signed by the same keys but is no access token
        if (
            header.get("typ", "").lower() not in JWT_ACCESS_TOKEN_TYPES
            and claims.get("typ") != "Bearer"
        ):
            raise BearerError("The token is not an access token (an id_token?).")
        return claims

    async def _signing_key(self, kid: str | None, alg: str) -> Any:
        for refresh in (False, True):
            keys = (await self.authn.metadata.jwks(refresh=refresh))["keys"]
            for jwk in keys:
                if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                    continue
                if kid is not None and jwk.get("kid") != kid:
                    continue
                try:
                    return jwt.PyJWK(jwk, algorithm=alg).key
                except jwt.PyJWTError:
                    continue
        raise IdTokenError(f"no signing key {kid!r} in the provider's key set")

    async def introspect(self, access_token: str) -> dict[str, Any]:
        return await introspect_token(self.authn, access_token, self.log)

    async def introspectable(self, access_token: str) -> bool:
        """Whether the provider can tell later that ``access_token`` was revoked: an opaque
        token was just introspected; a JWT (verified by its signature) is asked once."""
        if self.authn.jwt_login_check_interval <= 0 or not is_jwt(access_token):
            return True
        if not await self.authn.get_endpoint("introspection_endpoint"):
            return False
        try:
            await self.introspect(access_token)
        except BearerError:
            # valid by its signature, but not introspected (unsupported, or unknown to it):
            # the provider cannot tell the checks either
            return False
        except web.HTTPError:
            return True  # cannot tell now: the checks will ask
        return True

    async def exchange(self, access_token: str, claims: dict[str, Any]) -> dict[str, Any] | None:
        """RFC 8693 token exchange for a refresh token, when enabled and offered; else None.

        A failure is logged and the login goes on without a refresh token.
        """
        authenticator = self.authn
        if not authenticator.token_exchange_enabled:
            return None
        document = authenticator.metadata.document or {}
        offered = document.get("grant_types_supported")
        if isinstance(offered, list) and TOKEN_EXCHANGE_GRANT not in offered:
            self.log.warning("jwt_login: the provider does not offer token exchange")
            return None
        params = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": access_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": REFRESH_TOKEN_TYPE,
            "scope": " ".join(authenticator.token_exchange_scope),
        }
        try:
            token_info = await authenticator.post_token_endpoint(params)
        except (ProviderError, InvalidGrant, DiscoveryError) as e:
            self.log.warning("jwt_login: token exchange failed: %s", e)
            return None
        if not token_info.get("refresh_token"):
            self.log.warning("jwt_login: token exchange returned no refresh token")
        return token_info

    # ---- the user -----------------------------------------------------------------------
    async def auth_model(
        self, token_info: dict[str, Any], claims: dict[str, Any]
    ) -> dict[str, Any]:
        """The auth model a browser login would make, authorized as a login is; 403 if not."""
        authenticator = self.authn
        if authenticator.jwt_login_claims == "token":
            user_info = dict(claims)
        else:
            # the subject the verified token is about; token_to_user refuses another one
            token_info = {**token_info, "id_token_claims": {"sub": claims["sub"]}}
            user_info = await authenticator.token_to_user(token_info)
        if user_info.get("sub") != claims["sub"]:
            raise web.HTTPError(403, "The provider's answer is about another subject.")
        username = authenticator.normalize_username(authenticator.user_info_to_username(user_info))
        auth_state = authenticator.build_auth_state_dict(token_info, user_info)
        if isawaitable(auth_state):
            auth_state = await auth_state
        if authenticator.modify_auth_state_hook is not None:
            auth_state = await authenticator._call_modify_auth_state_hook(auth_state)
        authenticated: dict[str, Any] = {
            "name": username,
            "admin": True if username in authenticator.admin_users else None,
            "auth_state": auth_state,
            "user_info": None,
        }
        authenticated = await authenticator.update_auth_model(authenticated)
        if authenticator.manage_groups:
            # upstream's helper (oauthenticator 17): groups + admin_groups, as at login
            authenticated = await authenticator._apply_managed_groups(authenticated)
        # the steps of Authenticator.get_authenticated_user after authenticate()
        if not authenticator.validate_username(username):
            raise web.HTTPError(403, "Invalid user name.")
        not_blocked = authenticator.check_blocked_users(username, authenticated)
        if isawaitable(not_blocked):
            not_blocked = await not_blocked
        allowed = authenticator.allow_all
        if not_blocked and not allowed:
            allowed = await authenticator.check_allowed(username, authenticated)
        if not (not_blocked and allowed):
            self.log.warning("jwt_login: %s is not allowed", username)
            raise web.HTTPError(403, f"{username} is not allowed to use this hub.")
        if authenticated["admin"] is None:
            admin = authenticator.is_admin(self, authenticated)
            authenticated["admin"] = await admin if isawaitable(admin) else admin
        return await authenticator.run_post_auth_hook(self, authenticated)

    async def store_user(self, authenticated: dict[str, Any]) -> Any:
        """Create or update the hub user.

        Without a refresh token of its own (no token exchange) a stored grant (a browser
        login's, an earlier exchange's) is kept: it is refreshed and is what the notebooks
        get; only the claims (VOs) come from this request. A token exchange's new grant
        replaces the stored one, which is revoked at the provider as a new browser login's
        predecessor is (each exchange is a new offline grant).
        """
        authn = self.authn
        existing = self.find_user(authenticated["name"])
        previous = (await existing.get_auth_state() or {}) if existing is not None else {}
        auth_state = authenticated["auth_state"]
        if existing is not None:  # 403 for an account bound to another identity
            self.authn.check_account(existing.name, previous, auth_state)
        if BEARERS_KEY in previous:
            auth_state[BEARERS_KEY] = previous[BEARERS_KEY]
        if previous.get("refresh_token") and not auth_state.get("refresh_token"):
            for key in (
                "access_token",
                "refresh_token",
                "id_token",
                "scope",
                "token_response",
                "expires_at",
                "expires_in",
                "refreshed_at",
            ):
                if key in previous:
                    auth_state[key] = previous[key]
        elif existing is not None and auth_state.get("refresh_token"):
            # saves the new state, tells the spawner, revokes the replaced grant
            await authn.replace_grant(existing, auth_state)
            return await self.auth_to_user(authenticated)
        user = await self.auth_to_user(authenticated)
        if auth_state.get("access_token") != previous.get("access_token"):
            await authn.on_tokens_refreshed(user, auth_state)
        return user

    async def remember_bearer(
        self, user: Any, access_token: str, expires_at: float, checkable: bool
    ) -> None:
        """Keep ``access_token`` (encrypted in auth_state) for :class:`JWTLoginChecker`."""
        if self.authn.jwt_login_check_interval <= 0:
            return  # nobody checks: not kept
        async with self.authn._single_flight.hold(user.name):
            state = await user.get_auth_state() or {}
            bearers = live_bearers(state.get(BEARERS_KEY))
            bearers[token_fingerprint(access_token)] = {
                "token": access_token,
                "expires_at": expires_at,
                "introspect": checkable,
            }
            state[BEARERS_KEY] = bearers
            await user.save_auth_state(state)

    # ---- the hub token ------------------------------------------------------------------
    async def hub_token(
        self, user: Any, access_token: str, remaining: int, checkable: bool = True
    ) -> tuple[str, float]:
        """The hub token for ``access_token`` (reused while valid) and its expiry (epoch).

        A new one's access token is kept for the checks first: a hub token without it would
        be ended as unknown."""
        authenticator = self.authn
        lifetime = remaining
        if authenticator.jwt_login_max_lifetime > 0:
            lifetime = min(lifetime, authenticator.jwt_login_max_lifetime)
        scopes = sorted(authenticator.jwt_login_scopes or DEFAULT_JWT_LOGIN_SCOPES)
        secret = self.settings["cookie_secret"]
        secret = secret.encode() if isinstance(secret, str) else secret
        value = derived_hub_token(secret, access_token)
        note = TOKEN_NOTE_PREFIX + token_fingerprint(access_token)
        now = time.time()
        for orm_token in list(user.orm_user.api_tokens):
            if not (orm_token.note or "").startswith(TOKEN_NOTE_PREFIX):
                continue
            expires = _utc(orm_token.expires_at) or 0.0
            live = expires - now > REUSE_MARGIN_SECONDS
            if orm_token.note == note:
                if live and orm_token.match(value) and sorted(orm_token.scopes) == scopes:
                    return value, expires
            elif live:
                continue  # the hub token of another live access token
            # expired, about to, or made under other scopes: replaced
            self.db.delete(orm_token)
        self.db.commit()
        await self.remember_bearer(user, access_token, now + lifetime, checkable)
        user.new_api_token(
            token=value,
            generated=True,  # an HMAC-SHA256: full entropy, like a generated token
            note=note,
            scopes=scopes,
            expires_in=lifetime,
        )
        orm_token = orm.APIToken.find(self.db, value)
        return value, _utc(orm_token.expires_at) or now + lifetime
