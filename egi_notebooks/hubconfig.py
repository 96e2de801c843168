"""Helpers for ``jupyterhub_config.py``: the services with their least-privilege roles.

Each function appends to ``c.JupyterHub.services`` / ``load_roles`` / ``custom_scopes``
instead of replacing them, so operators' own entries survive::

    from egi_notebooks.hubconfig import add_tokens_service
    add_tokens_service(c)
"""

from __future__ import annotations

import sys
from typing import Any

from .auth.token_api import ACCESS_TOKENS_SCOPE, ACCESS_TOKENS_SCOPE_DESCRIPTION
from .services.tokens import TOKEN_SCOPE, TOKEN_SCOPE_DESCRIPTION


def _current(c: Any, trait: str, empty: Any) -> Any:
    # an unset key of a traitlets Config section is a LazyConfigValue, not the default
    section = c.JupyterHub
    return section[trait] if trait in section else empty


def _append(c: Any, trait: str, item: dict) -> None:
    setattr(c.JupyterHub, trait, [*_current(c, trait, []), item])


def add_custom_scopes(c: Any) -> None:
    scopes = dict(_current(c, "custom_scopes", {}))
    scopes.setdefault(ACCESS_TOKENS_SCOPE, {"description": ACCESS_TOKENS_SCOPE_DESCRIPTION})
    scopes.setdefault(TOKEN_SCOPE, {"description": TOKEN_SCOPE_DESCRIPTION})
    c.JupyterHub.custom_scopes = scopes


def service_command(subcommand: str, *args: str) -> list[str]:
    """The command line of a hub-managed service, with the hub's own Python."""
    return [sys.executable, "-m", "egi_notebooks.cli", subcommand, *args]


def add_tokens_service(
    c: Any,
    url: str = "http://127.0.0.1:10102",
    name: str = "tokens",
    users_may_use_api_tokens: bool = True,
) -> None:
    """The tokens service, its role (only ``custom:egi-notebooks:access-tokens``), and, when
    ``users_may_use_api_tokens``, the user role extended so a user's own API token may carry
    ``custom:egi-notebooks:token`` (server tokens work without it)."""
    add_custom_scopes(c)
    _append(c, "services", {"name": name, "url": url, "command": service_command("tokens")})
    _append(
        c,
        "load_roles",
        {
            "name": f"{name}-service",
            "description": "egi-notebooks tokens service: reads access tokens only",
            "scopes": [ACCESS_TOKENS_SCOPE],
            "services": [name],
        },
    )
    if users_may_use_api_tokens:
        _append(
            c,
            "load_roles",
            {"name": "user", "scopes": ["self", f"{TOKEN_SCOPE}!user"]},
        )
