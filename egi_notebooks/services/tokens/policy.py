"""Who may fetch whose access token: decided from the caller's hub identity model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import TOKEN_SCOPE


class Refused(Exception):
    """The caller may not have a token; the message is safe to show."""


SERVER_TOKEN_REQUIRED = f"requires a token of your own server or the {TOKEN_SCOPE} scope"
MINTED_BY_ANOTHER = (
    "this token was minted for you by another user or a service: it gets no access token;"
    " use your server's token or one you make yourself on the hub's token page"
)
SERVER_SHARED = (
    "this server was shared with other users since it started: it gets no access token until "
    "it is restarted (whoever was in it may have copied its token); restart it to get tokens "
    "again"
)


@dataclass(frozen=True)
class Grant:
    """The caller may have ``owner``'s access token; with ``server_token`` only once the hub
    confirms that the caller's token is the one it gave a server of ``owner``."""

    owner: str
    server_token: bool


def grant_for(identity: dict[str, Any], requested_user: str | None = None) -> Grant:
    """Whose token the caller may have, from ``GET /hub/api/user`` of its token.

    Allowed: the user's own token with ``custom:egi-notebooks:token``, or a token with access
    to one of the user's own servers (``access:servers!server=<user>/...``) that the hub then
    confirms is that server's own token: any user can mint a token with that scope, for a
    server that does not exist too, and an admin can mint one for any user. Refused:
    services, other users, and users who reach the server through JupyterHub sharing (their
    token names *another* user's server).
    """
    if identity.get("kind") != "user" or not isinstance(identity.get("name"), str):
        raise Refused("only users' and their servers' tokens may fetch an access token")
    name = identity["name"]
    if requested_user not in (None, "", name):
        raise Refused("a token can only be fetched for its owner")
    scopes = set(identity.get("scopes") or [])
    if TOKEN_SCOPE in scopes or f"{TOKEN_SCOPE}!user={name}" in scopes:
        return Grant(name, server_token=False)
    own_server = f"access:servers!server={name}/"
    if any(scope.startswith(own_server) for scope in scopes):
        return Grant(name, server_token=True)
    raise Refused(SERVER_TOKEN_REQUIRED)
