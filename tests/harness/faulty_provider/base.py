"""Shared handler machinery: call statistics, fault injection, JSON errors, client auth."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from tornado.web import HTTPError, RequestHandler

from .config import Client, ProviderConfig
from .keys import SigningKey
from .tokens import TokenStore

log = logging.getLogger("tests.harness.faulty_provider")

# OIDC endpoints by the names used in stats and fault injection (never /_admin)
ENDPOINTS = (
    "discovery",
    "jwks",
    "authorization",
    "token",
    "userinfo",
    "revocation",
    "introspection",
    "end_session",
)
FAULT_MODES = ("none", "down", "slow", "garbage", "html500")


class Stats:
    """How often each endpoint (and each grant type, and each user's refresh) was called."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.endpoints: Counter[str] = Counter()
        self.grants: Counter[str] = Counter()
        self.refresh_by_user: Counter[str] = Counter()
        self.invalid_grant = 0
        self.faulted = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.endpoints[name] for name in ENDPOINTS if name != "token"}
        out["token"] = {"authorization_code": 0, "refresh_token": 0, **self.grants}
        out["token_calls"] = self.endpoints["token"]
        out["refresh_by_user"] = dict(self.refresh_by_user)
        out["invalid_grant"] = self.invalid_grant
        out["faulted"] = self.faulted
        return out


@dataclass
class Fault:
    mode: str = "none"
    delay: float = 0.0
    endpoints: set[str] = field(default_factory=lambda: set(ENDPOINTS))
    count: int | None = None  # faults left before the mode returns to "none"; None = forever

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "delay": self.delay,
            "endpoints": sorted(self.endpoints),
            "count": self.count,
        }

    def take(self, endpoint: str) -> str | None:
        """The fault mode for this call to ``endpoint``, or None; uses up one of ``count``."""
        if self.mode == "none" or endpoint not in self.endpoints:
            return None
        mode = self.mode
        if self.count is not None:
            self.count -= 1
            if self.count <= 0:
                self.mode, self.count = "none", None
        return mode


@dataclass
class Provider:
    """Everything the handlers share."""

    config: ProviderConfig
    key: SigningKey
    store: TokenStore
    issuer: str
    stats: Stats = field(default_factory=Stats)
    fault: Fault = field(default_factory=Fault)


class OAuthError(HTTPError):
    """An RFC 6749 §5.2 error response: ``{"error": ..., "error_description": ...}``."""

    def __init__(
        self, status: int, error: str, description: str = "", headers: dict | None = None
    ) -> None:
        super().__init__(status, reason=None)
        self.error = error
        self.description = description
        self.headers = headers or {}


def request_summary(handler: RequestHandler) -> str:
    # the path only: query strings carry codes, states and id_token_hints
    return f"{handler.request.method} {handler.request.path} ({handler.request.remote_ip})"


class BaseHandler(RequestHandler):
    endpoint = ""

    def initialize(self, provider: Provider) -> None:
        self.provider = provider

    @property
    def store(self) -> TokenStore:
        return self.provider.store

    async def prepare(self) -> None:
        if not self.endpoint:
            return
        self.provider.stats.endpoints[self.endpoint] += 1
        self.count_call()
        fault = self.provider.fault
        delay = fault.delay
        mode = fault.take(self.endpoint)
        if mode is None:
            return
        self.provider.stats.faulted += 1
        log.info("fault %s (delay %ss) on %s", mode, delay, request_summary(self))
        if delay:
            await asyncio.sleep(delay)
        if mode == "down":
            # drop the connection without a response, like a crashed or unreachable server
            self.detach().close()
        elif mode == "garbage":
            self.set_header("Content-Type", "application/json")
            self.finish("<html>this is not JSON {")
        elif mode == "html500":
            self.set_status(500)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish("<html><body><h1>500 Internal Server Error</h1></body></html>")

    def count_call(self) -> None:
        """Extra per-endpoint statistics (the token endpoint counts grant types)."""

    # -- responses ---------------------------------------------------------------------------
    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Pragma", "no-cache")
        self.finish(json.dumps(obj))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, OAuthError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
            body = {"error": exc.error}
            if exc.description:
                body["error_description"] = exc.description
            self.write_json(body, status_code)
        elif status_code < 500:
            body = {"error": "invalid_request", "error_description": self._reason}
            self.write_json(body, status_code)
        else:
            self.write_json({"error": "server_error"}, status_code)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, HTTPError):
            return  # answered to the client; the access log has the status
        log.error("uncaught exception in %s", request_summary(self), exc_info=(typ, value, tb))

    # -- client authentication (client_secret_basic and client_secret_post) -----------------------
    def authenticate_client(self) -> Client:
        header = self.request.headers.get("Authorization", "")
        body_id = self.get_body_argument("client_id", None)
        body_secret = self.get_body_argument("client_secret", None)
        challenge = {"WWW-Authenticate": 'Basic realm="token"'}
        if header[:6].lower() == "basic ":
            if body_secret is not None:
                raise OAuthError(400, "invalid_request", "more than one client authentication")
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
                raw_id, raw_secret = decoded.split(":", 1)
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise OAuthError(
                    401, "invalid_client", "malformed Basic credentials", challenge
                ) from None
            # RFC 6749 §2.3.1: both parts are form-urlencoded before base64
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if body_id is not None and body_id != client_id:
                raise OAuthError(400, "invalid_request", "client_id differs from the Basic one")
        elif body_id is not None and body_secret is not None:
            client_id, secret, challenge = body_id, body_secret, {}
        else:
            raise OAuthError(401, "invalid_client", "client authentication required", challenge)
        client = self.provider.config.clients.get(client_id)
        if client is None or not hmac.compare_digest(
            secret.encode(), client.client_secret.encode()
        ):
            raise OAuthError(401, "invalid_client", "unknown client or wrong secret", challenge)
        return client
