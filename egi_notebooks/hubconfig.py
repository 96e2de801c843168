"""Helpers for ``jupyterhub_config.py``: the services with their least-privilege roles.

Each function appends to ``c.JupyterHub.services`` / ``load_roles`` / ``custom_scopes``
instead of replacing them, so operators' own entries survive::

    from egi_notebooks.hubconfig import add_tokens_service
    add_tokens_service(c)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .auth.token_api import ACCESS_TOKENS_SCOPE, ACCESS_TOKENS_SCOPE_DESCRIPTION
from .services.accounting import DB_URL_ENV, VO_PRIORITY_ENV
from .services.status import DEFAULT_PROBE_USER, PROBE_GROUP
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


#: The names the EGI pages show in the Services menu (``info.display_name`` of a service).
SERVICE_DISPLAY_NAMES = {
    "StatusApp": "Service status",
    "AccountingApp": "Accounting",
    "TokensApp": "Access tokens",
}
#: Services without a page for people (hidden from the Services menu).
API_ONLY_SERVICES = frozenset({"TokensApp"})


def _service(
    name: str,
    url: str,
    command: list[str],
    app_class: str,
    bind_url: str | None,
    environment: dict[str, str] | None,
) -> dict[str, Any]:
    """A managed service's entry. Unless ``bind_url`` is given the service listens on its
    URL's host when that is loopback, else on all interfaces at the URL's port
    (``HubServiceApp.bind_url``): z2jh's ``http://hub:<port>`` names the hub Service, not an
    address of the hub pod."""
    if bind_url:
        command = [*command, f"--{app_class}.bind_url={bind_url}"]
    service: dict[str, Any] = {"name": name, "url": url, "command": command}
    # the hub's Services menu: readable names (EGI pages), no entry for an API-only service
    display_name = SERVICE_DISPLAY_NAMES.get(app_class)
    if display_name:
        service["info"] = {"display_name": display_name}
    if app_class in API_ONLY_SERVICES:
        service["display"] = False
    if environment:
        service["environment"] = dict(environment)
    return service


def add_tokens_service(
    c: Any,
    url: str = "http://127.0.0.1:10102",
    name: str = "tokens",
    users_may_use_api_tokens: bool = True,
    bind_url: str | None = None,
    args: list[str] | tuple[str, ...] = (),
    environment: dict[str, str] | None = None,
) -> None:
    """The tokens service, its role (``custom:egi-notebooks:access-tokens``; the hub refuses the
    tokens of shared servers), and, when
    ``users_may_use_api_tokens``, the user role extended so a user's own API token may carry
    ``custom:egi-notebooks:token`` (server tokens work without it).

    ``url`` is where the proxy reaches the service; ``bind_url`` where it listens
    (``http://<ip>:<port>``; default: see ``HubServiceApp.bind_url``); ``args`` are more
    command-line options, ``environment`` more environment variables of the service
    (neither is a place for secrets: the hub logs the command and shows it to holders of
    ``read:services``)."""
    add_custom_scopes(c)
    command = service_command("tokens", *args)
    _append(c, "services", _service(name, url, command, "TokensApp", bind_url, environment))
    _append(
        c,
        "load_roles",
        {
            "name": f"{name}-service",
            "description": "egi-notebooks tokens service: access tokens",
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


def status_scopes(probe_user: str) -> list[str]:
    """The status service's role: only the probe user's resources and its marker group
    (egi_notebooks/services/status/app.py says why each scope is needed)."""
    return [
        f"admin:users!user={probe_user}",
        f"servers!user={probe_user}",
        f"access:servers!user={probe_user}",
        f"admin:groups!group={PROBE_GROUP}",
    ]


#: The accounting service's role: read users, their groups (= VOs) and servers (sessions) and
#: the server state (pod name, primary-VO and flavor annotations); nothing that changes a user,
#: and no auth_state (it holds the users' refresh tokens).
ACCOUNTING_SCOPES = [
    "list:users",
    "read:users:name",
    "read:users:groups",
    "read:servers",
    "admin:server_state",
]


def add_status_service(
    c: Any,
    url: str = "http://127.0.0.1:10101",
    name: str = "status",
    proxy_url: str = "http://proxy-public",
    probe_user: str | None = None,
    api_token: str | None = None,
    args: list[str] | tuple[str, ...] = (),
    bind_url: str | None = None,
    environment: dict[str, str] | None = None,
) -> None:
    """The status (monitoring) service and its role: no ``admin: true``, every scope
    filtered to the probe user or its marker group. ``proxy_url`` is how the service reaches
    single-user servers (z2jh: ``http://proxy-public``); ``args`` are more command-line
    options (``--StatusApp.interval=3600``...). ``api_token`` keeps the service's token
    stable across hub restarts (Nagios does not need it: the page needs no login).
    ``bind_url`` and ``environment``: as for :func:`add_tokens_service`."""
    probe_user = probe_user or DEFAULT_PROBE_USER
    command = service_command(
        "status", f"--StatusApp.proxy_url={proxy_url}", f"--StatusApp.probe_user={probe_user}",
        *args,
    )  # fmt: skip
    service = _service(name, url, command, "StatusApp", bind_url, environment)
    if api_token:
        service["api_token"] = api_token
    _append(c, "services", service)
    _append(
        c,
        "load_roles",
        {
            "name": f"{name}-service",
            "description": "egi-notebooks status probe: only the probe user's server",
            "scopes": status_scopes(probe_user),
            "services": [name],
        },
    )


def add_accounting_service(
    c: Any,
    url: str = "http://127.0.0.1:10103",
    name: str = "accounting",
    db_url: str = "sqlite:///egi-notebooks-accounting.sqlite",
    args: list[str] | tuple[str, ...] = (),
    oauth_no_confirm: bool = True,
    bind_url: str | None = None,
    environment: dict[str, str] | None = None,
) -> None:
    """The accounting service (sessions -> APEL/EOSC, admin view over hub OAuth) and its
    read-only role. ``args`` carry the rest of its configuration
    (``--ApelRenderer.site_name=...``, ``--spool-dir=...``, ``--config=/etc/...py``); the
    database URL is given here so that it is never forgotten (PostgreSQL in production); it
    reaches the service in its environment (``EGI_ACCOUNTING_DB_URL``), never on its command
    line, which the hub logs and shows in its services API.
    ``bind_url`` and ``environment``: as for :func:`add_tokens_service`.
    ``EGICheckinAuthenticator.vo_priority``, when set in ``c`` before this call, becomes the
    default of the service's ``Collector.vo_priority``."""
    command = service_command("accounting", *args)
    environment = {DB_URL_ENV: db_url, **(environment or {})}
    auth = c["EGICheckinAuthenticator"] if "EGICheckinAuthenticator" in c else {}
    if auth.get("vo_priority"):
        environment.setdefault(VO_PRIORITY_ENV, json.dumps(list(auth["vo_priority"])))
    service = _service(name, url, command, "AccountingApp", bind_url, environment)
    if oauth_no_confirm:
        service["oauth_no_confirm"] = True  # the admin view: no consent page for admins
    _append(c, "services", service)
    _append(
        c,
        "load_roles",
        {
            "name": f"{name}-service",
            "description": "egi-notebooks accounting: reads users, servers and primary VO",
            "scopes": list(ACCOUNTING_SCOPES),
            "services": [name],
        },
    )


#: What hub admins must not hold: auth_state holds the users' refresh tokens, which never
#: leave the hub, not even to admins.
WITHHELD_ADMIN_SCOPES = frozenset({"admin:auth_state"})

_RESTRICTED_MARK = "_egi_notebooks_withheld_scopes"


def _subscopes(scope: str) -> list[str]:
    from jupyterhub.scopes import scope_definitions

    return list(scope_definitions.get(scope, {}).get("subscopes", []))


def _reaches(scope: str, withheld: frozenset[str]) -> bool:
    return scope in withheld or any(_reaches(s, withheld) for s in _subscopes(scope))


def scopes_without(scopes: list[str], withheld: frozenset[str]) -> list[str]:
    """``scopes`` with each scope that includes a withheld one replaced by its subscopes,
    recursively, so that everything else it granted stays granted."""
    result: list[str] = []
    for scope in scopes:
        if scope in withheld:
            continue
        if _reaches(scope, withheld):
            result.extend(s for s in scopes_without(_subscopes(scope), withheld) if s not in result)
        elif scope not in result:
            result.append(scope)
    return result


def default_admin_scopes() -> list[str]:
    """The installed JupyterHub's own default ``admin`` scopes (before any restriction)."""
    from jupyterhub import roles

    upstream = getattr(roles.get_default_roles, _RESTRICTED_MARK, (roles.get_default_roles,))[0]
    (admin,) = [r for r in upstream() if r["name"] == "admin"]
    return list(admin["scopes"])


def restrict_admin_role(c: Any, withheld: frozenset[str] = WITHHELD_ADMIN_SCOPES) -> None:
    """Redefine JupyterHub's ``admin`` role without ``admin:auth_state``.

    The default admin role holds ``admin:users``, which includes ``admin:auth_state``:
    every admin could read every user's refresh token. Its scopes become the installed
    JupyterHub's default admin scopes with ``admin:users`` replaced by its other subscopes
    (``users``, ``read:roles:users``, ``delete:users``). Admins lose what needs
    ``admin:users`` itself: reading auth_state, and creating, renaming and editing users
    through the API (the edit answer carries the whole auth_state). Who is an admin does not
    change (``admin_users``, ``admin_groups``, ``admin_entitlements`` still grant the role).

    JupyterHub refuses other scopes for ``admin`` in ``load_roles`` (RoleValueError: the role
    is checked against ``jupyterhub.roles.get_default_roles``), so this replaces that
    function, in the hub process this configuration runs in, with one that returns the
    restricted admin role. Without this call the next hub start resets the role to the default.
    """
    from jupyterhub import roles

    for role in _current(c, "load_roles", []):
        if role.get("name") == "admin" and "scopes" in role:
            raise ValueError(
                "restrict_admin_role: c.JupyterHub.load_roles sets scopes of the admin role; "
                "leave them out (the restricted role defines them)"
            )
    current = roles.get_default_roles
    upstream = getattr(current, _RESTRICTED_MARK, (current,))[0]

    def get_default_roles() -> list[dict[str, Any]]:
        defaults = upstream()
        for role in defaults:
            if role["name"] == "admin":
                role["scopes"] = scopes_without(role["scopes"], frozenset(withheld))
                role["description"] = (
                    "Elevated privileges, without users' auth_state (egi-notebooks)"
                )
        return defaults

    setattr(get_default_roles, _RESTRICTED_MARK, (upstream, frozenset(withheld)))
    roles.get_default_roles = get_default_roles


def use_egi_pages(c: Any, logo_file: str | None = None) -> None:
    """The hub's pages in EGI's look (login, the 403 of a user in no allowed VO, error, home,
    token and admin pages): the package's templates in ``JupyterHub.template_paths`` (after
    those the operator listed, before JupyterHub's own),
    ``egi`` (:func:`egi_notebooks.pages.page_context`) in ``JupyterHub.template_vars``, and
    the EGI Notebooks logo as ``JupyterHub.logo_file`` unless ``logo_file`` or the operator's
    own ``c.JupyterHub.logo_file`` names another. Texts and links: ``c.EGIPages.<trait>``."""
    from .pages import LOGO, TEMPLATES, page_context

    paths = [p for p in _current(c, "template_paths", []) if p != str(TEMPLATES)]
    # an operator's own templates (already listed) still win over the package's
    c.JupyterHub.template_paths = [*paths, str(TEMPLATES)]
    c.JupyterHub.template_vars = {**_current(c, "template_vars", {}), "egi": page_context}
    if logo_file:
        c.JupyterHub.logo_file = logo_file
    elif "logo_file" not in c.JupyterHub:
        c.JupyterHub.logo_file = str(LOGO)
