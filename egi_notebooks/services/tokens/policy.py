"""Who may fetch whose access token: decided from the caller's hub identity model."""

from __future__ import annotations

from typing import Any

from . import TOKEN_SCOPE


class Refused(Exception):
    """The caller may not have a token; the message is safe to show."""


def owner_for(identity: dict[str, Any], requested_user: str | None = None) -> str:
    """The user whose token the caller may have, from ``GET /hub/api/user`` of its token.

    Allowed: a token of one of the user's own servers (``access:servers!server=<user>/...``,
    what JupyterHub gives each single-user server), or the user's own token with
    ``custom:egi-notebooks:token``. Refused: services, other users, and users who reach
    the server through JupyterHub sharing (their token names *another* user's server).
    """
    if identity.get("kind") != "user" or not isinstance(identity.get("name"), str):
        raise Refused("only users' and their servers' tokens may fetch an access token")
    name = identity["name"]
    if requested_user not in (None, "", name):
        raise Refused("a token can only be fetched for its owner")
    scopes = set(identity.get("scopes") or [])
    own_server = f"access:servers!server={name}/"
    if any(scope.startswith(own_server) for scope in scopes):
        return name
    if TOKEN_SCOPE in scopes or f"{TOKEN_SCOPE}!user={name}" in scopes:
        return name
    raise Refused(f"requires a token of your own server or the {TOKEN_SCOPE} scope")
