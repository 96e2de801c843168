"""The test/admin API under ``/_admin/``: change users and settings, read stats, inject faults.

Every call needs ``Authorization: Bearer <admin_token>`` (403 otherwise); with no admin_token
configured the whole API answers 404. Faults never apply here.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from .base import ENDPOINTS, FAULT_MODES, BaseHandler, Fault, OAuthError
from .config import ConfigError, check_claims, check_setting, make_user


class AdminHandler(BaseHandler):
    endpoint = ""  # not counted, never faulted

    async def prepare(self) -> None:
        token = self.provider.config.admin_token
        if token is None:
            raise OAuthError(404, "not_found", "the admin API is disabled (no admin_token)")
        header = self.request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise OAuthError(403, "forbidden", "admin token required")

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OAuthError(400, "invalid_request", "body is not JSON") from None
        if not isinstance(body, dict):
            raise OAuthError(400, "invalid_request", "body must be a JSON object")
        return body


def bad(e: ConfigError) -> OAuthError:
    return OAuthError(400, "invalid_request", str(e))


class UserHandler(AdminHandler):
    def user_json(self, login: str) -> None:
        user = self.provider.config.users[login]
        self.write_json({"login": login, "claims": user.claims})

    def get(self, login: str) -> None:
        if login not in self.provider.config.users:
            raise OAuthError(404, "not_found", f"no user {login!r}")
        self.user_json(login)

    def put(self, login: str) -> None:
        """Replace the user's claims (``sub`` is kept unless given), or create the user."""
        body = self.json_body()
        users = self.provider.config.users
        old = users.get(login)
        try:
            if old is None:
                users[login] = make_user(login, body.get("password"), body.get("claims", {}), login)
            else:
                claims = check_claims(login, body.get("claims", {}))
                claims.setdefault("sub", old.claims["sub"])  # a subject must never change
                password = body.get("password", old.password)
                users[login] = make_user(login, password, claims, login)
        except ConfigError as e:
            raise bad(e) from None
        self.user_json(login)

    def patch(self, login: str) -> None:
        """Merge claims into the user's (a null value removes the claim)."""
        user = self.provider.config.users.get(login)
        if user is None:
            raise OAuthError(404, "not_found", f"no user {login!r}")
        try:
            patch = check_claims(login, self.json_body().get("claims", {}))
        except ConfigError as e:
            raise bad(e) from None
        for name, value in patch.items():
            if value is None:
                if name != "sub":
                    user.claims.pop(name, None)
            else:
                user.claims[name] = value
        self.user_json(login)

    def delete(self, login: str) -> None:
        if self.provider.config.users.pop(login, None) is None:
            raise OAuthError(404, "not_found", f"no user {login!r}")
        self.store.drop_user(login)
        self.set_status(204)
        self.finish()


class ClientHandler(AdminHandler):
    def patch(self, client_id: str) -> None:
        """Rotate the client secret (``{"client_secret": ...}``), as an operator would.

        Clients still sending the old one get ``invalid_client``; tokens stay valid."""
        client = self.provider.config.clients.get(client_id)
        if client is None:
            raise OAuthError(404, "not_found", f"no client {client_id!r}")
        secret = self.json_body().get("client_secret")
        if not isinstance(secret, str) or not secret:
            raise OAuthError(400, "invalid_request", "client_secret must be a non-empty string")
        client.client_secret = secret
        self.write_json({"client_id": client_id})


class UserTokensHandler(AdminHandler):
    def get(self, login: str) -> None:
        self.write_json(self.store.live_counts(login))


class StatsHandler(AdminHandler):
    def get(self) -> None:
        self.write_json(self.provider.stats.as_dict())


class StatsResetHandler(AdminHandler):
    def post(self) -> None:
        self.provider.stats.reset()
        self.write_json(self.provider.stats.as_dict())


class SettingsHandler(AdminHandler):
    def get(self) -> None:
        self.write_json(self.provider.config.settings)

    def put(self) -> None:
        """Change lifetimes/flags; applies to tokens issued afterwards. All or nothing."""
        body = self.json_body()
        try:
            checked = {name: check_setting(name, value) for name, value in body.items()}
        except ConfigError as e:
            raise bad(e) from None
        self.provider.config.settings.update(checked)
        self.write_json(self.provider.config.settings)


class FaultHandler(AdminHandler):
    def get(self) -> None:
        self.write_json(self.provider.fault.as_dict())

    def put(self) -> None:
        body = self.json_body()
        mode = body.get("mode", "none")
        if mode not in FAULT_MODES:
            raise OAuthError(400, "invalid_request", f"mode must be one of {FAULT_MODES}")
        delay = body.get("delay", 0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise OAuthError(400, "invalid_request", "delay must be a number of seconds >= 0")
        endpoints = body.get("endpoints") or list(ENDPOINTS)
        if not isinstance(endpoints, list) or not set(endpoints) <= set(ENDPOINTS):
            raise OAuthError(400, "invalid_request", f"endpoints must be a subset of {ENDPOINTS}")
        count = body.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise OAuthError(400, "invalid_request", "count must be an integer or null")
        if count is not None and count < 1:
            raise OAuthError(400, "invalid_request", "count must be at least 1")
        self.provider.fault = Fault(mode=mode, delay=delay, endpoints=set(endpoints), count=count)
        self.write_json(self.provider.fault.as_dict())


def admin_routes() -> list[tuple[str, type[AdminHandler]]]:
    return [
        (r"/_admin/users/([^/]+)", UserHandler),
        (r"/_admin/clients/([^/]+)", ClientHandler),
        (r"/_admin/tokens/([^/]+)", UserTokensHandler),
        (r"/_admin/stats", StatsHandler),
        (r"/_admin/stats/reset", StatsResetHandler),
        (r"/_admin/settings", SettingsHandler),
        (r"/_admin/fault", FaultHandler),
    ]
