"""Token expiry maths, provider-error classification and the per-user single-flight lock.

Why single-flight matters: with rotating refresh tokens (Keycloak, which runs EGI Check-in)
two concurrent refresh grants for one user cannot both succeed; the loser gets
``invalid_grant`` and the user is logged out. So every refresh of one user goes through one
lock, and whoever holds it re-reads the stored auth_state before calling the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt


class ProviderError(Exception):
    """The token endpoint could not give an answer we can use (down, slow, 5xx, garbage).

    Transient: the session stays valid while its access token is.
    """


class InvalidGrant(Exception):
    """The provider refused the refresh token: the user must log in again."""


class ClientAuthError(ProviderError):
    """The provider refused the hub itself (``invalid_client``, ``unauthorized_client``).

    The operator's error (wrong or rotated client secret, client registration lacking a grant
    type), not the user's: their sessions and refresh tokens stay, as when the provider is down.
    """


def jwt_exp(token: object) -> float | None:
    """``exp`` of a JWT access token, read without verification (only to schedule refresh)."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 64_000:
        return None
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def compute_expiry(token_response: dict[str, Any], now: float | None = None) -> float | None:
    """Epoch seconds at which the access token expires, from ``expires_in`` and a JWT ``exp``.

    The earlier of the two wins; ``None`` when neither is known.
    """
    now = time.time() if now is None else now
    candidates = []
    expires_in = token_response.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        candidates.append(now + float(expires_in))
    exp = jwt_exp(token_response.get("access_token"))
    if exp is not None:
        candidates.append(exp)
    return min(candidates) if candidates else None


def effective_leeway(leeway: float, lifetime: float | None) -> float:
    """Refresh this many seconds before expiry.

    Never more than half the token's lifetime: with short-lived tokens a large leeway would
    make every request a refresh.
    """
    if lifetime and lifetime > 0:
        return min(leeway, lifetime / 2)
    return leeway


def refresh_due_at(auth_state: dict[str, Any], leeway: float) -> float | None:
    """Epoch seconds from which the access token should be refreshed; ``None`` if unknown."""
    expires_at = auth_state.get("expires_at")
    if not isinstance(expires_at, int | float):
        return None
    lifetime = auth_state.get("expires_in")
    lifetime = lifetime if isinstance(lifetime, int | float) else None
    return float(expires_at) - effective_leeway(leeway, lifetime)


def needs_refresh(auth_state: dict[str, Any], leeway: float, now: float | None = None) -> bool:
    due = refresh_due_at(auth_state, leeway)
    now = time.time() if now is None else now
    return due is None or now >= due


def access_token_valid(auth_state: dict[str, Any], now: float | None = None) -> bool:
    expires_at = auth_state.get("expires_at")
    now = time.time() if now is None else now
    return isinstance(expires_at, int | float) and now < expires_at


# RFC 6749 §5.2: the client's authentication failed, or the client may not use this grant type
CLIENT_ERRORS = ("invalid_client", "unauthorized_client")


def parse_token_response(status: int, body: bytes, content_type: str = "") -> dict[str, Any]:
    """Classify a token-endpoint answer; never puts token values into exception messages."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if status == 200:
        if isinstance(data, dict) and isinstance(data.get("access_token"), str):
            return data
        raise ProviderError(f"token endpoint answered 200 without usable JSON ({content_type})")
    if status in (400, 401) and isinstance(data, dict):
        error = data.get("error")
        if error == "invalid_grant":
            raise InvalidGrant(str(error))
        if error in CLIENT_ERRORS:
            raise ClientAuthError(str(error))
        raise ProviderError(f"token endpoint answered HTTP {status} error={str(error)[:64]!r}")
    raise ProviderError(f"token endpoint answered HTTP {status} ({content_type or 'no type'})")


class SingleFlight:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class RefreshBackoff:
    """Per-user exponential backoff of refresh grants while the provider fails.

    Shared by every path that refreshes (requests, the background refresher, the
    access-token endpoint): a failing provider is asked about a user once per delay, however
    many callers want that user's token.
    """

    def __init__(
        self,
        first: float = 5.0,
        maximum: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first = first
        self.maximum = maximum
        self.clock = clock
        # user name -> (current delay, clock time of the next allowed try)
        self._entries: dict[str, tuple[float, float]] = {}

    def failed(self, name: str) -> float:
        """Record a failed refresh of ``name``; the seconds until the next try is allowed."""
        now = self.clock()
        entry = self._entries.get(name)
        if entry is None or now > entry[1] + self.maximum:
            # first failure, or the last one is long past: start from the first step again
            delay = min(self.maximum, self.first)
        else:
            delay = min(self.maximum, entry[0] * 2)
        self._entries[name] = (delay, now + delay)
        return delay

    def succeeded(self, name: str) -> None:
        """``name`` needs no backoff: refreshed, logged in again, or nothing left to retry."""
        self._entries.pop(name, None)

    def delay(self, name: str) -> float | None:
        """The current backoff step of ``name`` (seconds), None when not backing off."""
        entry = self._entries.get(name)
        return entry[0] if entry else None

    def remaining(self, name: str) -> float:
        """Seconds until a refresh of ``name`` may be tried (0: now)."""
        entry = self._entries.get(name)
        return max(0.0, entry[1] - self.clock()) if entry else 0.0

    def waiting(self, name: str) -> bool:
        return self.remaining(name) > 0

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
