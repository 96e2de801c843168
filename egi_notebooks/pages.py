"""The hub's own pages in EGI's look: login, the 403 for a user in no allowed VO, error pages,
home and token pages (templates in ``egi_notebooks/templates``).

:func:`egi_notebooks.hubconfig.use_egi_pages` puts the templates first in
``JupyterHub.template_paths`` and gives every template ``egi``, a :class:`PageContext`: the
texts and links of :class:`EGIPages` (configurable, EGI defaults) and what the pages need from
the running hub (the VOs that give access, the provider's logout, the probe user).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy.orm import object_session
from traitlets import Dict, Unicode
from traitlets.config import Configurable

from .entitlements import parse_pattern

TEMPLATES = Path(__file__).parent / "templates"
LOGO = TEMPLATES / "egi-notebooks-logo.svg"
#: The variable operators set in the servers' environment to the tokens service's token URL.
TOKEN_URL_ENV = "EGI_NOTEBOOKS_TOKEN_URL"

#: What a missing scope lets one do, in words (JupyterHub's 403 names only scopes).
SCOPE_WORDS = {
    "admin-ui": "open the administration page, which is for the hub's administrators",
    "access:servers": "use this notebook server, which belongs to another account",
    "servers": "start or stop this server",
    "delete:servers": "delete this server",
    "read:servers": "see this server",
    "admin:users": "manage users",
    "users": "change users",
    "read:users": "see other users",
    "list:users": "list the users",
    "delete:users": "delete users",
    "tokens": "manage these tokens",
    "read:tokens": "see these tokens",
    "access:services": "use this service",
    "list:services": "list the services",
    "read:services": "see this service",
    "groups": "change groups",
    "admin:groups": "manage groups",
    "read:groups": "see groups",
    "shares": "share servers",
    "read:shares": "see shares",
    "proxy": "change the proxy's routes",
    "shutdown": "shut the hub down",
}
_SCOPES_MISSING = re.compile(r"requires any of \[([^\]]*)\]")


class EGIPages(Configurable):
    """Texts and links of the hub's pages (``c.EGIPages.<trait>``). The logo is
    ``JupyterHub.logo_file`` (default with :func:`~egi_notebooks.hubconfig.use_egi_pages`: the
    EGI Notebooks logo shipped with the package)."""

    service_name = Unicode(
        "EGI Notebooks",
        config=True,
        help="The service's name: page titles, the login page's heading and the footer.",
    )
    introduction = Unicode(
        "Jupyter notebooks in your browser, on EGI's cloud: write code, text and equations,"
        " analyse your data and share the results. Sign in with your EGI Check-in account;"
        " access is for members of the virtual organisations (VOs) that use this service.",
        config=True,
        help="The short introduction on the login page (plain text).",
    )
    documentation_url = Unicode(
        "https://docs.egi.eu/users/dev-env/notebooks/",
        config=True,
        help="The user documentation, linked from every page's footer and from error pages.",
    )
    acceptable_use_policy_url = Unicode(
        "https://documents.egi.eu/document/2623",
        config=True,
        help="""The acceptable use policy, linked from every page's footer. Default: the
        EGI Acceptable Use Policy and Conditions of Use.""",
    )
    privacy_notice_url = Unicode(
        "https://www.egi.eu/privacy-notice/",
        config=True,
        help="""The privacy notice, linked from every page's footer. Set the notice of your
        own service (what it processes, for how long, who to contact).""",
    )
    enrolment_url = Unicode(
        "https://aai.egi.eu/registry/co_petitions/start/coef:111",
        config=True,
        help="""Where a user asks to join a VO that gives access, offered on the page a
        signed-in user without such a VO gets. Default: the enrolment of
        ``vo.notebooks.egi.eu`` in Check-in. Empty: no enrolment link.""",
    )
    support_url = Unicode(
        "https://docs.egi.eu/support/",
        config=True,
        help="Where users get help, offered on error pages. Empty: no link.",
    )
    access_description = Unicode(
        "",
        config=True,
        help="""What the page for a user without an allowed VO says gives access, instead of
        the list made from ``EGICheckinAuthenticator.allowed_vos`` and
        ``allowed_entitlements`` (plain text).""",
    )
    service_display_names = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""Names shown in the Services menu, by service name. The ``add_*_service``
        helpers give their services one (``info.display_name`` of the service); this wins.""",
    )


def readable_pattern(pattern: str) -> str:
    """An ``allowed_entitlements`` pattern in words (``Members of vo.x, with the role r``)."""
    try:
        parsed = parse_pattern(pattern)
    except ValueError:
        return pattern
    text = f"Members of {parsed.vo}"
    if parsed.groups:
        text += f", group {'/'.join(parsed.groups)}"
    if parsed.role:
        text += f", with the role {parsed.role}"
    return text


def access_vos(authenticator: Any) -> list[str]:
    """Who may log in, in words, from the authenticator's ``allowed_vos`` and
    ``allowed_entitlements`` (sorted; empty for another authenticator)."""
    vos = sorted(getattr(authenticator, "allowed_vos", None) or ())
    readable = [f"Members of {vo}" for vo in vos]
    patterns = sorted(getattr(authenticator, "allowed_entitlements", None) or ())
    readable += [readable_pattern(p) for p in patterns]
    return readable


def scopes_in_words(message: str) -> list[str]:
    """What the scopes a JupyterHub 403 names (``requires any of [a, b!user=x]``) allow."""
    found = _SCOPES_MISSING.search(message or "")
    if not found:
        return []
    words: list[str] = []
    for scope in found.group(1).split(","):
        # the filter (!user=..., !server=...) names the account, which the page says anyway
        text = SCOPE_WORDS.get(scope.strip().partition("!")[0], "do this")
        if text not in words:
            words.append(text)
    return words


@dataclass
class ErrorText:
    """An error page: a short title, what happened, what to do."""

    title: str
    what: str
    todo: str


def _meaningful(message: Any) -> str:
    text = "" if message is None else str(message).strip()
    return "" if text in ("", "None") else text


def error_text(status_code: int, message: Any = None) -> ErrorText:
    """The words of an error page for a status code and the exception's message."""
    text = _meaningful(message)
    if status_code == 403:
        missing = scopes_in_words(text)
        if missing:
            return ErrorText(
                "Not allowed",
                "Your account may not " + " or ".join(missing) + ".",
                "If you need this, ask the operators of this service. Otherwise go back.",
            )
        return ErrorText(
            "Not allowed",
            text or "Your account may not open this page.",
            "Sign in again, or go back.",
        )
    if status_code == 404:
        if text in ("", "No access to resources or resources not found"):
            text = "There is nothing here, or it is not yours to see."
        return ErrorText("Page not found", text, "Check the address, or go back to the start.")
    if status_code == 400:
        if text.startswith("OAuth error:"):
            return ErrorText(
                "Sign-in did not complete",
                "EGI Check-in did not sign you in: " + text.removeprefix("OAuth error:").strip(),
                "Sign in again.",
            )
        return ErrorText(
            "Request not understood", text or "The page got a request it cannot handle.",
            "Go back and try again.",
        )  # fmt: skip
    if status_code == 401:
        return ErrorText("Sign-in needed", text or "This page needs you signed in.", "Sign in.")
    if status_code in (502, 503, 504):
        return ErrorText(
            "Service unavailable",
            text or "A part of the service is not answering right now.",
            "Try again in a few minutes.",
        )
    if status_code >= 500:
        return ErrorText(
            "Something went wrong",
            text or "The hub could not complete this request.",
            "Try again; if it keeps happening, contact support.",
        )
    return ErrorText(
        f"Error {status_code}", text or "The request failed.", "Go back and try again."
    )


def _app() -> Any:
    """The running JupyterHub (None outside of one)."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:  # pragma: no cover (a hub always has it)
        return None
    return JupyterHub.instance() if JupyterHub.initialized() else None


class PageContext:
    """What the templates see as ``egi``: :class:`EGIPages`' traits, and helpers that read the
    running hub (its authenticator and services)."""

    def __init__(self, pages: EGIPages, app: Any = None):
        self.pages = pages
        self.app = app

    def __getattr__(self, name: str) -> Any:
        if name in EGIPages.class_trait_names():
            return getattr(self.pages, name)
        raise AttributeError(name)

    @property
    def authenticator(self) -> Any:
        return getattr(self.app, "authenticator", None)

    def access(self) -> list[str]:
        """Who may log in, in words (``access_description`` when set)."""
        if self.pages.access_description:
            return [self.pages.access_description]
        return access_vos(self.authenticator)

    def is_not_member(self, status_code: int, message: Any) -> bool:
        """Whether an error is the login refusal of a user who is in no allowed VO
        (oauthenticator raises it with ``custom_403_message``)."""
        expected = getattr(self.authenticator, "custom_403_message", None)
        return status_code == 403 and bool(expected) and _meaningful(message) == expected

    def error(self, status_code: int, message: Any = None) -> ErrorText:
        return error_text(status_code, message)

    def switch_account_url(self, login_url: str) -> str:
        """Sign out at the provider (RP-initiated logout without an id_token: the provider
        asks to confirm), then back to the hub's login page; the login page when the
        provider has no end_session endpoint."""
        authenticator = self.authenticator
        metadata = getattr(authenticator, "metadata", None)
        document = getattr(metadata, "document", None) or {}
        endpoint = document.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            return login_url
        params = {"client_id": authenticator.client_id}
        try:
            back = authenticator.post_logout_uri_for(_SettingsOnly(self.app))
        except Exception:  # no configured public address: the provider's own page then
            back = None
        if back:
            params["post_logout_redirect_uri"] = back
        separator = "&" if "?" in endpoint else "?"
        return endpoint + separator + urlencode(params)

    def service_name_of(self, service: Any) -> str:
        """A service's name for the Services menu."""
        name = getattr(service, "name", "")
        info = getattr(service, "info", None) or {}
        return self.pages.service_display_names.get(name) or info.get("display_name") or name

    def token_url(self) -> str:
        """The tokens service's token URL (its path under the hub; empty without it)."""
        for spec in getattr(self.app, "services", None) or []:
            command = [a for a in spec.get("command") or [] if isinstance(a, str)]
            if _runs_subcommand(command, "tokens") and spec.get("name"):
                return f"{self._public_base().rstrip('/')}/services/{spec['name']}/token"
        return ""

    def _public_base(self) -> str:
        """The hub's public URL with base_url (``public_url``, else the origin of the
        authenticator's ``oauth_callback_url``), the base_url alone when neither is set."""
        public = getattr(self.app, "public_url", "") or ""
        if public:  # it already ends with base_url
            return public
        base = getattr(self.app, "base_url", "/") or "/"
        callback = urlsplit(getattr(self.authenticator, "oauth_callback_url", "") or "")
        if callback.scheme and callback.netloc:
            return f"{callback.scheme}://{callback.netloc}{base}"
        return base

    def token_url_env(self) -> str:
        """``EGI_NOTEBOOKS_TOKEN_URL`` when the spawner's environment sets it (empty else)."""
        config = getattr(self.app, "config", None) or {}
        for section in ("Spawner", "KubeSpawner", "EGISpawner", "SimpleLocalProcessSpawner"):
            environment = config.get(section, {}).get("environment", {})
            if isinstance(environment, dict) and TOKEN_URL_ENV in environment:
                return TOKEN_URL_ENV
        return ""

    def token_file_env(self) -> str:
        """The environment variable naming the token file (EGISpawner only; empty else)."""
        spawner_class = getattr(self.app, "spawner_class", None)
        names = [c.__name__ for c in getattr(spawner_class, "__mro__", ())]
        if spawner_class is None or "EGISpawner" not in names:
            return ""
        for name in names:  # configuration of the class or a base class, nearest first
            section = getattr(self.app, "config", {}).get(name, {})
            if "token_file_env" in section:
                return str(section["token_file_env"])
        trait = spawner_class.class_traits().get("token_file_env")
        return str(trait.default_value) if trait is not None else ""

    def servers_shared_since_start(self, user: Any) -> list[str]:
        """Names of ``user``'s running servers that have been shared since they started
        (``""``: the default server): they get no tokens until restarted."""
        from .shared_servers import shared_since_start

        orm_user = getattr(user, "orm_user", None)
        db = object_session(orm_user) if orm_user is not None else None
        if orm_user is None or db is None:
            return []
        return sorted(
            name
            for name, orm_spawner in orm_user.orm_spawners.items()
            if orm_spawner.server is not None and shared_since_start(db, orm_spawner)
        )

    def probe_users(self) -> list[str]:
        """The status service's probe users (from the services' command lines)."""
        found = []
        for spec in getattr(self.app, "services", None) or []:
            for arg in spec.get("command") or []:
                if isinstance(arg, str) and arg.startswith("--StatusApp.probe_user="):
                    found.append(arg.partition("=")[2])
        return found


def _runs_subcommand(command: list[str], subcommand: str) -> bool:
    """Whether a service command is ``... egi_notebooks.cli <subcommand>`` (or the script)."""
    for i, arg in enumerate(command[:-1]):
        if (arg == "egi_notebooks.cli" or arg.endswith("egi-notebooks")) and (
            command[i + 1] == subcommand
        ):
            return True
    return False


class _SettingsOnly:
    """The part of a handler ``post_logout_uri_for`` reads first (the hub's settings)."""

    def __init__(self, app: Any):
        self.settings = dict(getattr(app, "tornado_settings", None) or {})
        self.request = None


_contexts: dict[int, PageContext] = {}


def page_context(user: Any = None) -> PageContext:
    """``template_vars["egi"]``: one :class:`PageContext` per running hub, its
    :class:`EGIPages` configured from the hub's configuration."""
    app = _app()
    key = id(app)
    context = _contexts.get(key)
    if context is None or context.app is not app:
        pages = EGIPages(parent=app) if app is not None else EGIPages()
        context = _contexts[key] = PageContext(pages, app)
    return context
