"""OpenID Connect discovery and id_token verification, asynchronous and cached.

Nothing here runs at import or trait-default time: the hub's event loop must never block on
the identity provider. The discovery document and the JWKS are fetched on first use,
retried with a bounded backoff, and cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from ..retry import retry

DISCOVERY_PATH = "/.well-known/openid-configuration"
ENDPOINT_KEYS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "introspection_endpoint",
    "end_session_endpoint",
)
# Larger id_tokens are refused before parsing; a logout sends the id_token back in a URL.
MAX_ID_TOKEN_LENGTH = 64_000
# Asymmetric algorithms only: an HS256 id_token would be signed with the client secret.
ALLOWED_ID_TOKEN_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")

# (url) -> (status code, body bytes); raises OSError-like errors for transport failures
Fetcher = Callable[[str], Awaitable[tuple[int, bytes]]]


class DiscoveryError(Exception):
    """The provider's configuration could not be obtained or is unusable."""


class IdTokenError(Exception):
    """An id_token failed verification."""


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


class OIDCMetadata:
    """The provider metadata of one issuer, fetched lazily and cached.

    ``fetch`` is injected so that the authenticator's HTTP client (tornado's, with its
    timeouts and TLS settings) is used.
    """

    def __init__(
        self,
        issuer: str,
        fetch: Fetcher,
        log: logging.Logger,
        retries: int = 3,
        backoff: float = 1.0,
        cache_seconds: float = 3600,
        failure_cache_seconds: float = 10,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.url = discovery_url(self.issuer)
        self._fetch = fetch
        self.log = log
        self.retries = retries
        self.backoff = backoff
        self.cache_seconds = cache_seconds
        self.failure_cache_seconds = failure_cache_seconds
        self._document: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._failure: tuple[float, str] | None = None
        self._lock = asyncio.Lock()
        self._jwks: dict[str, Any] | None = None
        self._jwks_fetched_at = 0.0

    @property
    def document(self) -> dict[str, Any] | None:
        """The cached document, if any (never fetches)."""
        return self._document

    async def get(self) -> dict[str, Any]:
        """The discovery document; raises :class:`DiscoveryError` with the reason."""
        now = time.monotonic()
        if self._document is not None and now - self._fetched_at < self.cache_seconds:
            return self._document
        async with self._lock:
            now = time.monotonic()
            if self._document is not None and now - self._fetched_at < self.cache_seconds:
                return self._document
            # A recent failure is not retried at once: a login page hit by many users while
            # the provider is down must not turn into a flood of discovery requests.
            if self._failure and now - self._failure[0] < self.failure_cache_seconds:
                if self._document is not None:
                    return self._document
                raise DiscoveryError(self._failure[1])
            try:
                document = await self._fetch_with_retries()
            except DiscoveryError as e:
                self._failure = (time.monotonic(), str(e))
                if self._document is not None:
                    # keep serving the last good document while the provider is away
                    self.log.warning("Keeping cached OIDC discovery: %s", e)
                    return self._document
                raise
            self._document = document
            self._fetched_at = time.monotonic()
            self._failure = None
            return document

    async def _fetch_with_retries(self) -> dict[str, Any]:
        try:
            status, body = await retry(
                lambda: self._fetch(self.url),
                attempts=self.retries + 1,
                backoff=self.backoff,
                retry_on=Exception,  # transport errors of any client
                retry_result=lambda answer: answer[0] != 200,
            )
        except Exception as e:
            reason = f"cannot reach {self.url}: {e}"
        else:
            if status == 200:
                return self._validate(body)
            reason = f"{self.url} answered HTTP {status}"
        self.log.error("OIDC discovery failed: %s", reason)
        raise DiscoveryError(reason)

    def _validate(self, body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except ValueError as e:
            raise DiscoveryError(f"{self.url} did not return JSON") from e
        if not isinstance(document, dict):
            raise DiscoveryError(f"{self.url} did not return a JSON object")
        issuer = document.get("issuer")
        if issuer != self.issuer:
            raise DiscoveryError(f"{self.url} names issuer {issuer!r}, expected {self.issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(document.get(key), str):
                raise DiscoveryError(f"{self.url} has no {key}")
        return document

    async def jwks(self, refresh: bool = False) -> dict[str, Any]:
        """The provider's JSON Web Key Set (cached; ``refresh`` after a key rotation)."""
        now = time.monotonic()
        fresh = now - self._jwks_fetched_at < self.cache_seconds
        # refetching on an unknown kid is rate limited to once a minute
        if self._jwks is not None and (fresh and not refresh or now - self._jwks_fetched_at < 60):
            return self._jwks
        document = await self.get()
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise IdTokenError("the provider publishes no jwks_uri")
        try:
            status, body = await self._fetch(uri)
            keys = json.loads(body) if status == 200 else None
        except Exception as e:
            raise IdTokenError(f"cannot fetch the provider's keys: {e}") from e
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
            raise IdTokenError(f"{uri} did not return a JSON Web Key Set")
        self._jwks = keys
        self._jwks_fetched_at = time.monotonic()
        return keys

    async def verify_id_token(
        self,
        id_token: str,
        audience: str,
        nonce: str | None = None,
        leeway: float = 30,
    ) -> dict[str, Any]:
        """Verify signature, ``iss``, ``aud``, ``azp``, ``exp`` (and ``nonce`` when given).

        Returns the claims. With several audiences ``azp`` must be present, and when present
        it must be ``audience`` (the hub's client_id): a token issued to another client that
        merely lists the hub among its audiences is not the hub's.
        """
        if not isinstance(id_token, str):
            raise IdTokenError("id_token is not a compact JWT")
        if len(id_token) > MAX_ID_TOKEN_LENGTH:
            raise IdTokenError(
                f"id_token is not a compact JWT of at most {MAX_ID_TOKEN_LENGTH:,} characters: it"
                f" has {len(id_token):,} (a provider that puts very many entitlements in it?)"
            )
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as e:
            raise IdTokenError(f"id_token is not a JWT: {e}") from e
        alg = header.get("alg")
        if alg not in ALLOWED_ID_TOKEN_ALGS:
            raise IdTokenError(f"id_token algorithm {alg!r} is not accepted")
        key = await self._signing_key(header.get("kid"), alg)
        try:
            claims = jwt.decode(
                id_token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=self.issuer,
                leeway=leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise IdTokenError(f"id_token rejected: {e}") from e
        if nonce is not None and claims.get("nonce") != nonce:
            raise IdTokenError("id_token nonce does not match the login request")
        aud = claims["aud"]
        several = isinstance(aud, list) and len(aud) > 1
        if "azp" in claims or several:
            if claims.get("azp") != audience:
                raise IdTokenError(
                    f"id_token azp {claims.get('azp')!r} is not this client"
                    + (" (an id_token with several audiences must name it)" if several else "")
                )
        return claims

    async def _signing_key(self, kid: str | None, alg: str) -> Any:
        for refresh in (False, True):
            keys = (await self.jwks(refresh=refresh))["keys"]
            candidates = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
            if kid is not None:
                candidates = [k for k in candidates if k.get("kid") == kid]
            for jwk in candidates:
                try:
                    return jwt.PyJWK(jwk, algorithm=alg).key
                except jwt.PyJWTError:
                    continue
        raise IdTokenError(f"no signing key {kid!r} in the provider's key set")
