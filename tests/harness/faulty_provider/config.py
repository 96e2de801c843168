"""Configuration of the local provider: parsed once at start-up, errors name the key at fault."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egi_notebooks.demo.accounts import stable_sub

# Lifetimes and flags that the admin API may change at run time (PUT /_admin/settings).
SETTING_DEFAULTS: dict[str, Any] = {
    "access_token_lifetime": 3600,
    "refresh_token_lifetime": 86400,
    "id_token_lifetime": 3600,
    "code_lifetime": 60,
    "jwt_access_tokens": False,
    # claims left out of id_tokens (userinfo still has them), as Check-in does with
    # entitlements and voperson_id
    "userinfo_only_claims": [],
}
# what makes an id_token an id_token: never left out
PROTOCOL_CLAIMS = frozenset({"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce"})


class ConfigError(ValueError):
    """The configuration (file or admin API body) is invalid; the message says where."""


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)


@dataclass
class User:
    login: str
    password: str
    claims: dict[str, Any]


@dataclass
class ProviderConfig:
    realm_path: str
    settings: dict[str, Any]
    admin_token: str | None
    clients: dict[str, Client]
    users: dict[str, User]
    signing_key_file: str | None


def check_setting(name: str, value: Any) -> Any:
    if name not in SETTING_DEFAULTS:
        raise ConfigError(f"unknown setting {name!r} (known: {', '.join(SETTING_DEFAULTS)})")
    if name == "userinfo_only_claims":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{name} must be a list of claim names, not {value!r}")
        protocol = sorted(PROTOCOL_CLAIMS & set(value))
        if protocol:
            raise ConfigError(f"{name}: {protocol} cannot be left out of id_tokens")
        return list(value)
    if name == "jwt_access_tokens":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    # bool is an int subclass: refuse it so that `true` is not taken as 1 second
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    return value


def check_claims(where: str, claims: Any) -> dict[str, Any]:
    if not isinstance(claims, dict):
        raise ConfigError(f"{where}: claims must be a JSON object")
    if "sub" in claims and (not isinstance(claims["sub"], str) or not claims["sub"]):
        raise ConfigError(f"{where}: claims.sub must be a non-empty string")
    return dict(claims)


def make_user(login: str, password: Any, claims: Any, where: str) -> User:
    if not isinstance(login, str) or not login or "/" in login:
        raise ConfigError(f"{where}: login must be a non-empty string without '/'")
    if not isinstance(password, str) or not password:
        raise ConfigError(f"{where}: password must be a non-empty string")
    claims = check_claims(where, claims)
    claims.setdefault("sub", stable_sub(login))
    return User(login=login, password=password, claims=claims)


def _str_list(where: str, value: Any, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of URLs")
    if required and not value:
        raise ConfigError(f"{where} must not be empty")
    return list(value)


def _parse_client(i: int, raw: Any) -> Client:
    where = f"clients[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a JSON object")
    unknown = set(raw) - {
        "client_id",
        "client_secret",
        "redirect_uris",
        "post_logout_redirect_uris",
    }
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("client_id", "client_secret"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}.{key} must be a non-empty string")
    return Client(
        client_id=raw["client_id"],
        client_secret=raw["client_secret"],
        redirect_uris=_str_list(f"{where}.redirect_uris", raw.get("redirect_uris"), True),
        post_logout_redirect_uris=_str_list(
            f"{where}.post_logout_redirect_uris", raw.get("post_logout_redirect_uris"), False
        ),
    )


def parse_config(raw: Any) -> ProviderConfig:
    """Validate a decoded config document (schema in the package docstring)."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a JSON object")
    known = {"realm_path", "admin_token", "clients", "users", "signing_key_file"}
    unknown = set(raw) - known - set(SETTING_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}")

    realm_path = raw.get("realm_path", "/auth/realms/egi")
    if not isinstance(realm_path, str) or not realm_path.startswith("/") or "?" in realm_path:
        raise ConfigError("realm_path must be a path starting with '/'")
    realm_path = realm_path.rstrip("/")
    if realm_path.startswith("/_admin"):
        raise ConfigError("realm_path must not be under /_admin")

    settings = dict(SETTING_DEFAULTS)
    for name in SETTING_DEFAULTS:
        if name in raw:
            settings[name] = check_setting(name, raw[name])

    admin_token = raw.get("admin_token")
    if admin_token is not None and (not isinstance(admin_token, str) or not admin_token):
        raise ConfigError("admin_token must be a non-empty string (or absent to disable /_admin)")

    raw_clients = raw.get("clients")
    if not isinstance(raw_clients, list) or not raw_clients:
        raise ConfigError("clients must be a non-empty list")
    clients: dict[str, Client] = {}
    for i, raw_client in enumerate(raw_clients):
        client = _parse_client(i, raw_client)
        if client.client_id in clients:
            raise ConfigError(f"clients[{i}]: duplicate client_id {client.client_id!r}")
        clients[client.client_id] = client

    raw_users = raw.get("users")
    if not isinstance(raw_users, dict) or not raw_users:
        raise ConfigError("users must be a non-empty JSON object {login: {password, claims}}")
    users: dict[str, User] = {}
    for login, spec in raw_users.items():
        where = f"users.{login}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a JSON object")
        unknown = set(spec) - {"password", "claims"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        users[login] = make_user(login, spec.get("password"), spec.get("claims", {}), where)

    key_file = raw.get("signing_key_file")
    if key_file is not None and (not isinstance(key_file, str) or not Path(key_file).is_file()):
        raise ConfigError(f"signing_key_file {key_file!r} is not a readable file")

    return ProviderConfig(
        realm_path=realm_path,
        settings=settings,
        admin_token=admin_token,
        clients=clients,
        users=users,
        signing_key_file=key_file,
    )


def load_config(path: str) -> ProviderConfig:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    return parse_config(raw)
