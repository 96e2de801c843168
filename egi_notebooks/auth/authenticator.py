"""EGICheckinAuthenticator: EGI Check-in (or any OIDC issuer) for JupyterHub.

Thin layer over oauthenticator's GenericOAuthenticator: configuration traits, discovery,
VO authorization from entitlements, proactive single-flight refresh, revocation at logout.
The behaviour lives in small overridable methods of this class (refresh and logout among
them); the pieces with logic of their own that need no authenticator live in
``discovery.py``, ``refresh.py``, ``refresh_flow.py``, ``logout.py`` and
``egi_notebooks.entitlements``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from jupyterhub import orm
from jupyterhub.crypto import CryptKeeper
from jupyterhub.utils import maybe_future
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import (
    Bool,
    Callable,
    Enum,
    Float,
    Integer,
    List,
    Set,
    Unicode,
    default,
    observe,
    validate,
)

from ..entitlements import (
    EntitlementTrust,
    choose_primary_vo,
    count_entitlement_values,
    entitlements_of,
    issuer_defaults,
    matches_any,
    parse_pattern,
    vos_of,
)
from ..identity import IDENTITY_KEY, bound_identity, carry_over, identity_of, make_identity
from .background import BackgroundRefresher
from .discovery import DiscoveryError, IdTokenError, OIDCMetadata
from .jwt_login import (
    BEARERS_KEY,
    DEFAULT_JWT_LOGIN_SCOPES,
    JWT_LOGIN_PATH,
    JWTLoginChecker,
    JWTLoginHandler,
    end_jwt_logins,
)
from .login import EGICallbackHandler, EGILoginHandler, nonce_from_state_cookie
from .logout import (
    EGILogoutHandler,
    end_session_url,
    revoke_auth_state_tokens,
    revoke_tokens,
    strip_tokens,
)
from .refresh import (
    ClientAuthError,
    InvalidGrant,
    ProviderError,
    RefreshBackoff,
    SingleFlight,
    access_token_valid,
    compute_expiry,
    needs_refresh,
    parse_token_response,
)
from .refresh_flow import apply_auth_model, end_hub_access
from .share_guard import share_handlers
from .token_api import ACCESS_TOKEN_PATH, AccessTokenAPIHandler
from .token_requests import TOKENS_PATH, RecordingUserTokenListAPIHandler
from .usernames import USERNAME_PATTERN, VOPERSON_ID_PATTERN, default_pattern, usable_username

CHECKIN_HOSTS = ("aai.egi.eu", "aai-demo.egi.eu", "aai-dev.egi.eu")
# `eduperson_entitlement`, not its successor `entitlements`: Check-in refuses a scope that is
# not registered for the client (invalid_scope), and existing clients have only the old one.
CHECKIN_SCOPE = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "eduperson_entitlement",
    "voperson_id",
]
# Check-in's entitlement claim and its successor, released side by side during the move
ENTITLEMENT_CLAIMS = ["eduperson_entitlement", "entitlements"]
# VO names that may become hub group names (group names end up in RBAC scopes: group=<name>)
VO_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# traits filled from discovery unless the operator set them
DISCOVERED_URLS = {
    "authorize_url": "authorization_endpoint",
    "token_url": "token_endpoint",
    "userdata_url": "userinfo_endpoint",
}


class EGICheckinAuthenticator(GenericOAuthenticator):
    """Log in with EGI Check-in; authorize and make admins from VO entitlements."""

    login_handler = EGILoginHandler
    callback_handler = EGICallbackHandler
    logout_handler = EGILogoutHandler

    # ---- provider -------------------------------------------------------------------
    checkin_host = Unicode(
        "aai.egi.eu",
        config=True,
        help=f"""EGI Check-in instance: one of {", ".join(CHECKIN_HOSTS)}.
        The issuer is ``https://{{checkin_host}}/auth/realms/egi``. Ignored when
        ``oidc_issuer`` is set.""",
    )
    oidc_issuer = Unicode(
        "",
        config=True,
        help="""Any OpenID Connect issuer URL (EOSC AAI, a Keycloak realm, a test provider).
        Overrides ``checkin_host``. Every endpoint comes from
        ``{issuer}/.well-known/openid-configuration`` unless set explicitly.""",
    )
    discovery_retries = Integer(
        3, config=True, help="Retries (with exponential backoff) of a failed discovery request."
    )
    discovery_backoff = Float(
        1.0, config=True, help="First backoff in seconds between discovery retries."
    )
    token_endpoint_auth_method = Enum(
        ["client_secret_basic", "client_secret_post"],
        "client_secret_basic",
        config=True,
        help="How the hub authenticates to the token, revocation and introspection endpoints.",
    )
    verify_id_token = Bool(
        True,
        config=True,
        help="Verify the id_token (JWKS signature, iss, aud, exp, nonce) at login and refresh.",
    )
    use_nonce = Bool(True, config=True, help="Send an OIDC nonce and check it in the id_token.")

    # ---- users and authorization ---------------------------------------------------
    username_fallback_claims = List(
        Unicode(),
        [],
        config=True,
        help="""Claims tried in order when ``username_claim`` (a string) is absent. Default:
        none (a fallback such as ``sub`` names the same person differently, so a user whose
        ``voperson_id`` is missing once would get a second hub user). There is no anonymous
        fallback: without any of them the login is refused. The fallback's value must pass
        ``username_claim_pattern`` too.""",
    )
    username_claim_pattern = Unicode(
        config=True,
        help=f"""Regular expression the username claim's value must match (full match), as
        the provider released it. Default: ``{VOPERSON_ID_PATTERN}`` when ``username_claim``
        is ``voperson_id`` (Check-in's are lowercase: an upper-case one is refused, not
        lowercased into another user's name), else ``{USERNAME_PATTERN}`` (the hub
        lowercases it, as egi-notebooks-hub 1.0 did with ``preferred_username``). Whatever
        the pattern, a value that Unicode NFKC normalisation changes (U+212A KELVIN SIGN
        would become ``K``) or with surrounding spaces is refused: such values fold
        different identities into one hub user.""",
    )
    identity_claim = Unicode(
        "sub",
        config=True,
        help="""Claim that identifies a person for good (never changed, never reassigned):
        each hub account is bound to its value at creation (or by ``egi-notebooks
        migrate-users``), and a login whose value differs is refused (403), so that a
        username that comes to name someone else (egi-notebooks-hub 1.0 named users after
        the changeable ``preferred_username``) never hands over an account, its servers or
        its home. Recorded in auth_state (``egi_notebooks.identity``).""",
    )
    entitlements_claims = List(
        Unicode(),
        ENTITLEMENT_CLAIMS,
        minlen=1,
        config=True,
        help="""Claims that hold the AARC-G002 entitlements (VO memberships and roles); their
        values are united (order kept, duplicates dropped). Default: Check-in's
        ``eduperson_entitlement`` and its successor ``entitlements``. A claim the provider
        leaves out counts as no entitlements: Check-in sends no entitlement claim at all to a
        user who has none. The claims are released only for the matching scopes in
        ``scope``.""",
    )
    entitlements_claim = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""Deprecated: use ``entitlements_claims`` (a list). When set, its one claim
        replaces ``entitlements_claims`` (unless that is set too), with a warning.""",
    )
    allowed_vos = Set(
        Unicode(),
        config=True,
        help="""VO names whose members (any group, any role) may log in. Only entitlements
        of ``trusted_entitlement_namespaces`` and ``trusted_entitlement_authorities`` make a
        user a member.""",
    )
    trusted_entitlement_namespaces = Set(
        Unicode(),
        config=True,
        help="""Entitlement namespaces (``urn:mace:egi.eu``) whose entitlements count: the
        VOs in auth_state (``allowed_vos``, hub groups, ``primary_vo``, the spawner's
        profiles and VO volumes), and the short patterns of ``allowed_entitlements`` and
        ``admin_entitlements``. Anyone can mint an entitlement with an EGI VO's name in a
        namespace of their own. Default by issuer: ``urn:geant:eosc-federation.eu`` for the
        EOSC EU Node AAI (``proxy.aai.open-science-cloud.ec.europa.eu``,
        ``proxy.staging.eosc-federation.eu``, ``proxy.testing.eosc-federation.eu``),
        ``urn:geant:eosc-portal.eu`` for the EOSC Core Infrastructure Proxy
        (``aai.eosc-portal.eu``, ``aai-demo.eosc-portal.eu``), Check-in's
        ``urn:mace:egi.eu`` for any other issuer. Compared case-insensitively.""",
    )
    trusted_entitlement_authorities = Set(
        Unicode(),
        config=True,
        help="""Entitlement authorities (the part after ``#``) whose entitlements count,
        together with ``trusted_entitlement_namespaces``. Default: ``aai.egi.eu`` (plus the
        Check-in host itself for ``aai-demo.egi.eu`` and ``aai-dev.egi.eu``); the issuer's
        host for the EOSC AAIs.""",
    )
    entitlements_without_authority = Bool(
        config=True,
        help="""Whether an entitlement without ``#<authority>`` counts (when its namespace
        is trusted). AARC-G069 made the authority optional. Default: False for Check-in,
        whose ``eduperson_entitlement`` always carries ``#aai.egi.eu``; True for the EOSC
        AAIs, whose ``entitlements`` claim leaves it out.""",
    )
    max_entitlements = Integer(
        1000,
        min=1,
        config=True,
        help="""Most entitlement values a user may have (all ``entitlements_claims``
        together); a login with more is refused with a message saying so, and a refresh
        with more ends the session. Real users have tens. Parsing 1,000 takes about 15 ms
        of the hub's event loop at every login and refresh.""",
    )
    vo_groups = Set(
        Unicode(),
        config=True,
        help="""VOs that become hub groups besides those the configuration already names
        (``allowed_vos``, the VOs of ``allowed_entitlements`` and ``admin_entitlements``
        patterns, ``allowed_groups``, ``admin_groups``). Only those VOs make hub groups:
        with none named, no VO becomes a group (every VO of every user would otherwise make
        a group that is never removed).""",
    )
    vo_group_pattern = Unicode(
        VO_GROUP_PATTERN,
        config=True,
        help="""Regular expression a VO name must match (full match) to become a hub group
        name; other VOs still authorize, they only make no group.""",
    )
    allowed_entitlements = Set(
        Unicode(),
        config=True,
        help="""Entitlement patterns whose holders may log in: a full URN
        (``urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu``) or the short form
        ``<vo>[:<group>...][:role=<role>]`` (role omitted = any role).""",
    )
    admin_entitlements = Set(
        Unicode(),
        config=True,
        help="""Entitlement patterns (same grammar as ``allowed_entitlements``) that make a
        user a hub admin. When set, admin status follows them at every login and refresh:
        losing the entitlement removes admin (``admin_users`` stay admins).""",
    )
    vo_priority = List(
        Unicode(),
        config=True,
        help="""VOs in order of preference for ``primary_vo`` in auth_state (used by
        accounting). A user's primary VO is the first of these they belong to, else the first
        VO in the provider's order. An entry ending in ``*`` stands for the VOs starting with
        what precedes it (``pp-*``: an EOSC EU Node personal project).""",
    )

    # ---- refresh ---------------------------------------------------------------------
    refresh_leeway = Integer(
        600,
        config=True,
        help="""Refresh the access token this many seconds before it expires (never more than
        half its lifetime). Keep it above ``auth_refresh_age`` so that the hub's periodic
        check always lands in the refresh window. Until then ``refresh_user`` makes no
        network call at all.""",
    )
    userinfo_on_refresh = Enum(
        ["auto", "always", "never"],
        "auto",
        config=True,
        help="""Where refreshed claims come from; they replace the stored ones, so a claim
        the answer leaves out is gone (a user without entitlement claims has no VO).
        ``auto``: the verified id_token of the refresh response when it carries one of
        ``entitlements_claims``, else the userinfo endpoint (Check-in puts entitlements only
        in userinfo). ``always``: the userinfo endpoint. ``never``: the verified id_token only;
        only for a provider whose id_tokens carry the entitlements (on Check-in every user
        would lose every VO), and without an id_token nothing is re-checked.""",
    )
    client_error_log_interval = Float(
        300,
        config=True,
        help="""Seconds between two log errors about the hub's own client credentials being
        refused (``invalid_client``, ``unauthorized_client``: a wrong or rotated
        ``client_secret``). Such a refusal is never blamed on users: sessions and refresh
        tokens are kept.""",
    )

    background_refresh = Bool(
        True,
        config=True,
        help="""Refresh the tokens of users with running servers ahead of expiry, without
        any request from the user, so notebooks always find a valid access token.""",
    )
    background_refresh_concurrency = Integer(
        10, config=True, help="Background refreshes running at once, at most (all users)."
    )
    background_refresh_max_interval = Float(
        30, config=True, help="Longest pause in seconds between two background refresh passes."
    )
    background_refresh_max_backoff = Float(
        300,
        config=True,
        help="Longest pause in seconds between refresh attempts of a user while the IdP fails.",
    )
    stop_servers_on_authorization_loss = Bool(
        True,
        config=True,
        help="""Stop the user's servers when a refresh finds them no longer authorized (no
        allowed VO or entitlement left, refused claims, blocked), whichever refresh it is:
        background, on a request, for the tokens service. Their hub API tokens (their
        servers' and browsers' OAuth tokens included), login cookies and provider tokens
        are revoked either way. With False their servers keep running, unreachable once the
        servers' own cached token checks expire, until an admin stops them.""",
    )

    # ---- logout ------------------------------------------------------------------------
    revoke_on_logout = Enum(
        ["always", "unless-servers-running", "never"],
        "unless-servers-running",
        config=True,
        help="""Revoke the user's refresh and access tokens at logout. With
        ``unless-servers-running`` (default), a user whose notebooks keep running after logout
        keeps the tokens those notebooks rely on.""",
    )
    end_session_redirect = Bool(
        True,
        config=True,
        help="""After logout send the browser to the provider's end_session endpoint (with
        id_token_hint and post_logout_redirect_uri). ``logout_redirect_url`` wins when set.""",
    )
    post_logout_redirect_uri = Unicode(
        "",
        config=True,
        help="Where the provider sends the browser after logout (default: the hub login page).",
    )

    tokens_changed_hook = Callable(
        None,
        allow_none=True,
        config=True,
        help="""Called after every change of a user's stored tokens: a refresh, a new login,
        a logout or lost authorization that removes them. Signature::

            [await] tokens_changed_hook(authenticator, user, auth_state)

        ``user`` is the hub's User, ``auth_state`` the new one (without access_token and
        refresh_token when they were removed). May be async. An error is logged and does
        not undo the change. Unset, EGISpawner sets it to write the tokens to the token
        Secrets of the user's running servers (egi_notebooks.spawner.spawner.tokens_changed);
        a hook of your own replaces that, so call
        egi_notebooks.spawner.update_user_token_secrets(user, auth_state) from it to keep it.""",
    )

    # ---- API access with an access token (GET /hub/jwt_login) ------------------------
    jwt_login_enabled = Bool(
        True,
        config=True,
        help="""Answer ``GET /hub/jwt_login`` (egi-notebooks-hub's path): a caller with
        ``Authorization: Bearer <access token>`` of the provider gets a hub API token for that
        user, after the same VO authorization as a login (the user is created if new). JWTs
        are verified by signature, ``iss``, ``exp``, ``aud``/``azp``; opaque tokens by
        introspection.""",
    )
    jwt_login_audiences = List(
        Unicode(),
        config=True,
        help="""Audiences an access token may be issued for: its ``aud`` must name one of
        them; a token without ``aud`` counts by the client it was issued to (``azp`` or, in
        introspection, ``client_id``). Default: the hub's ``client_id`` only. Add the ids of
        the clients (command-line tools) whose tokens may log in, or the resource URL a
        provider puts in ``aud``. Tokens issued to the hub's own client are refused anyway
        unless ``jwt_login_accept_hub_client_tokens`` is set.""",
    )
    jwt_login_accept_hub_client_tokens = Bool(
        False,
        config=True,
        help="""Let access tokens issued to the hub's own client (``azp``/``client_id`` =
        ``client_id``) log in at ``/hub/jwt_login``. Off by default: those are the tokens
        the hub hands to every notebook (token Secret, tokens service) for use with other
        APIs, so anyone a notebook sent its token to could log in as the user and run code
        in their servers. API clients should use tokens of their own client instead.""",
    )
    jwt_login_check_interval = Integer(
        300,
        min=0,
        config=True,
        help="""Seconds between two checks of the access tokens behind live ``/hub/jwt_login``
        hub tokens (one introspection each): a hub token ends within this time (plus one
        pass) after its access token is revoked at the provider. The access tokens are kept
        for this in the users' encrypted ``auth_state``. 0: no checks (a hub token then
        lives until the access token's expiry, or a logout that revokes).""",
    )
    jwt_login_scopes = List(
        Unicode(),
        DEFAULT_JWT_LOGIN_SCOPES,
        config=True,
        help="""Scopes of the hub tokens that ``/hub/jwt_login`` hands out. Default: the
        user's own servers (start, stop, reach) and reading their own model.""",
    )
    jwt_login_max_lifetime = Integer(
        0,
        min=0,
        config=True,
        help="""Longest lifetime in seconds of a hub token from ``/hub/jwt_login``; it never
        outlives the access token it was made for. 0: the access token's remaining lifetime.""",
    )
    jwt_login_claims = Enum(
        ["userinfo", "token"],
        "userinfo",
        config=True,
        help="""Where ``/hub/jwt_login`` reads the user's claims: ``userinfo`` (Check-in
        releases entitlements there) or ``token`` (the verified JWT or the introspection
        answer, for a provider whose access tokens carry them).""",
    )
    token_exchange_enabled = Bool(
        False,
        config=True,
        help="""At ``/hub/jwt_login``, exchange the access token for a refresh token of the hub
        (RFC 8693; the client must be allowed the grant at the provider), so that background
        refresh keeps API-only users' tokens fresh. Skipped when discovery does not list the
        grant.""",
    )
    token_exchange_scope = List(
        Unicode(),
        ["openid", "offline_access", "profile", "email", "eduperson_entitlement", "voperson_id"],
        config=True,
        help="Scopes asked for in the token exchange (``offline_access`` for a refresh token).",
    )

    # ---- upstream defaults that fit Check-in -----------------------------------------
    @default("login_service")
    def _default_login_service(self) -> str:
        return "EGI Check-in"

    @default("scope")
    def _default_scope(self) -> list[str]:
        # the upstream trait's help cannot say it: the list must match the client's
        # registration (see the reference documentation)
        return list(CHECKIN_SCOPE)

    @default("username_claim")
    def _default_username_claim(self) -> str:
        return "voperson_id"

    @default("enable_auth_state")
    def _default_enable_auth_state(self) -> bool:
        return True

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("trusted_entitlement_namespaces")
    def _default_trusted_namespaces(self) -> set[str]:
        return set(issuer_defaults(self.issuer).namespaces)

    @default("trusted_entitlement_authorities")
    def _default_trusted_authorities(self) -> set[str]:
        return set(issuer_defaults(self.issuer).authorities)

    @default("entitlements_without_authority")
    def _default_entitlements_without_authority(self) -> bool:
        return issuer_defaults(self.issuer).without_authority

    @default("username_claim_pattern")
    def _default_username_claim_pattern(self) -> str:
        return default_pattern(self.username_claim)

    @validate("username_claim_pattern", "vo_group_pattern")
    def _validate_regex(self, proposal: dict) -> str:
        try:
            re.compile(proposal["value"])
        except re.error as e:
            raise ValueError(f"{type(self).__name__}.{proposal['trait'].name}: {e}") from e
        return proposal["value"]

    _entitlements_claims_configured = False

    @observe("entitlements_claims")
    def _entitlements_claims_changed(self, change: dict) -> None:
        # observers see configured values, never defaults: tells the two apart
        self._entitlements_claims_configured = True

    @default("basic_auth")
    def _default_basic_auth(self) -> bool:
        return self.token_endpoint_auth_method == "client_secret_basic"

    @observe("token_endpoint_auth_method")
    def _auth_method_changed(self, change: dict) -> None:
        self.basic_auth = change["new"] == "client_secret_basic"

    @default("http_request_kwargs")
    def _default_http_request_kwargs(self) -> dict:
        return {"connect_timeout": 5.0, "request_timeout": 10.0}

    @validate("allowed_entitlements", "admin_entitlements")
    def _validate_patterns(self, proposal: dict) -> set[str]:
        for pattern in proposal["value"]:
            try:
                parse_pattern(pattern)
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}.{proposal['trait'].name}: {e}") from e
        return proposal["value"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._use_deprecated_entitlements_claim()
        self._client_error_logged_at: float | None = None
        self._explicit_urls = {name for name in DISCOVERED_URLS if getattr(self, name)}
        self._single_flight = SingleFlight()
        self._jwt_login_flight = SingleFlight()
        self._provider_warned: set[str] = set()
        self.metadata = OIDCMetadata(
            self.issuer,
            self._fetch_url,
            self.log,
            retries=self.discovery_retries,
            backoff=self.discovery_backoff,
        )
        self.check_configuration()

    def _use_deprecated_entitlements_claim(self) -> None:
        old = self.entitlements_claim
        if old is None:
            return
        name = type(self).__name__
        if self._entitlements_claims_configured and self.entitlements_claims != [old]:
            self.log.warning(
                "%s.entitlements_claim is deprecated and ignored: entitlements_claims = %r is set",
                name,
                self.entitlements_claims,
            )
            return
        self.log.warning(
            "%s.entitlements_claim is deprecated: use %s.entitlements_claims = [%r]"
            " (the default reads both eduperson_entitlement and entitlements)",
            name,
            name,
            old,
        )
        self.entitlements_claims = [old]

    def check_configuration(self) -> None:
        """Configuration errors found at start-up, each in one line naming the trait."""
        name = type(self).__name__
        if not self.enable_auth_state:
            raise ValueError(
                f"{name}.enable_auth_state must be True: tokens, VOs and refresh live in auth_state"
            )
        if not os.environ.get("JUPYTERHUB_CRYPT_KEY") and not CryptKeeper.instance().keys:
            raise ValueError(
                f"{name} needs encrypted auth_state: set JUPYTERHUB_CRYPT_KEY"
                " (`openssl rand -hex 32`; z2jh: hub.config.CryptKeeper.keys)"
            )
        if not self.client_id:
            self.log.warning("%s.client_id is not set: logins will fail", name)
        # validated here too: a pattern computed as a default is not seen by @validate
        re.compile(self.username_claim_pattern)
        self.log.info(
            "%s: entitlements count from namespaces %s, authorities %s%s",
            name,
            sorted(self.trusted_entitlement_namespaces),
            sorted(self.trusted_entitlement_authorities),
            " and without authority" if self.entitlements_without_authority else "",
        )
        self._warn_unnamed_group_vos()

    @property
    def entitlement_trust(self) -> EntitlementTrust:
        """The namespaces and authorities whose entitlements count."""
        return EntitlementTrust(
            frozenset(self.trusted_entitlement_namespaces),
            frozenset(self.trusted_entitlement_authorities),
            self.entitlements_without_authority,
        )

    @property
    def group_vos(self) -> set[str]:
        """The VOs that become hub groups: those the configuration names."""
        patterns = [*self.allowed_entitlements, *self.admin_entitlements]
        named = {parse_pattern(p).vo for p in patterns}
        named |= self.allowed_vos | self.vo_groups | self.allowed_groups | self.admin_groups
        pattern = re.compile(self.vo_group_pattern)
        return {vo for vo in named if pattern.fullmatch(vo)}

    def _warn_unnamed_group_vos(self) -> None:
        pattern = re.compile(self.vo_group_pattern)
        bad = sorted(vo for vo in self.allowed_vos | self.vo_groups if not pattern.fullmatch(vo))
        if bad and self.manage_groups:
            self.log.warning(
                "%s: VOs %s do not match vo_group_pattern and make no hub group",
                type(self).__name__,
                bad,
            )

    @property
    def issuer(self) -> str:
        if self.oidc_issuer:
            return self.oidc_issuer.rstrip("/")
        return f"https://{self.checkin_host}/auth/realms/egi"

    # ---- discovery -------------------------------------------------------------------
    async def _fetch_url(self, url: str) -> tuple[int, bytes]:
        # upstream's httpfetch adds http_request_kwargs; an HTTP error status is an answer
        # (OIDCMetadata decides), only a transport failure raises
        response = await self.httpfetch(
            url,
            label="fetching OIDC metadata",
            parse_json=False,
            raise_error=False,
            headers={"Accept": "application/json"},
            validate_cert=self.validate_server_cert,
        )
        if response.code == 599:
            raise ConnectionError(str(response.error))
        return response.code, response.body or b""

    async def ensure_endpoints(self) -> dict[str, Any]:
        """Discovery document, with the URL traits filled in from it (explicit ones win)."""
        try:
            document = await self.metadata.get()
        except DiscoveryError:
            if len(self._explicit_urls) == len(DISCOVERED_URLS):
                return {}
            raise
        for trait, key in DISCOVERED_URLS.items():
            if trait not in self._explicit_urls and isinstance(document.get(key), str):
                setattr(self, trait, document[key])
        return document

    async def get_endpoint(self, key: str) -> str | None:
        """One endpoint from discovery (``revocation_endpoint``...), None if unknown."""
        try:
            document = await self.ensure_endpoints()
        except DiscoveryError:
            return None
        value = document.get(key)
        return value if isinstance(value, str) else None

    async def revoke_access_tokens(self, tokens: Iterable[str]) -> int:
        """Revoke access tokens at the provider (for the spawner, when a server is shared):
        how many the provider confirmed revoked."""
        pairs = [(t, "access_token") for t in tokens if t]
        return (await revoke_tokens(self, pairs) or 0) if pairs else 0

    def get_handlers(self, app: Any) -> list:
        # JupyterHub calls this while its loop runs: warm the discovery cache in the
        # background (so the first login does not wait and a bad issuer is logged at
        # start-up) and start the background refresh.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._warm_task = loop.create_task(self._warm_discovery())
            if self.background_refresh:
                self.background_refresher = BackgroundRefresher(
                    self,
                    app,
                    concurrency=self.background_refresh_concurrency,
                    max_sleep=self.background_refresh_max_interval,
                    max_backoff=self.background_refresh_max_backoff,
                    log=self.log,
                )
                self.background_refresher.start()
            if self.jwt_login_enabled and self.jwt_login_check_interval > 0:
                self.jwt_login_checker = JWTLoginChecker(
                    self, app, self.jwt_login_check_interval, self.log
                )
                self.jwt_login_checker.start()
        return [
            *super().get_handlers(app),
            (ACCESS_TOKEN_PATH, AccessTokenAPIHandler),
            # JupyterHub's token creation, recording who asked for another user's token
            (TOKENS_PATH, RecordingUserTokenListAPIHandler),
            (JWT_LOGIN_PATH, JWTLoginHandler),
            # the spawner withholds its tokens (or refuses) before JupyterHub shares
            *share_handlers(),
        ]

    async def _warm_discovery(self) -> None:
        try:
            await self.ensure_endpoints()
        except DiscoveryError:
            pass  # already logged with the reason; the login page says so

    def pre_spawn_start(self, user: Any, spawner: Any) -> None:
        refresher = getattr(self, "background_refresher", None)
        if refresher is not None:
            refresher.wake()

    # ---- token endpoint ---------------------------------------------------------------
    async def post_as_client(self, url: str, fields: dict[str, Any], label: str) -> Any:
        """A form POST to one of the provider's endpoints (token, introspection, revocation),
        the client authenticated as ``token_endpoint_auth_method`` says (RFC 6749 2.3.1,
        RFC 7009 2.1, RFC 7662 2.1): upstream's HTTP Basic header, or the credentials in the
        form. Returns the response, an HTTP error status included (code 599: unreachable)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        if not self.basic_auth:
            fields.update(client_id=self.client_id, client_secret=self.client_secret)
        # upstream's httpfetch adds http_request_kwargs
        return await self.httpfetch(
            url,
            label=label,
            parse_json=False,
            raise_error=False,
            method="POST",
            headers=self.build_token_info_request_headers(),
            body=urlencode(fields),
            validate_cert=self.validate_server_cert,
        )

    async def post_token_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        """POST to the token endpoint; raises ProviderError / InvalidGrant (never token values)."""
        await self.ensure_endpoints()
        fields = {k: v for k, v in params.items() if k != "data"}
        try:
            response = await self.post_as_client(self.token_url, fields, "at the token endpoint")
        except Exception as e:
            raise ProviderError(f"cannot reach the token endpoint: {type(e).__name__}: {e}") from e
        if response.code == 599:
            raise ProviderError(f"cannot reach the token endpoint: {response.error}")
        return parse_token_response(
            response.code, response.body or b"", response.headers.get("Content-Type", "")
        )

    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Login code exchange (upstream calls this from ``authenticate``)."""
        try:
            await self.ensure_endpoints()
            token_info = await self.post_token_endpoint(params)
        except DiscoveryError as e:
            raise web.HTTPError(503, f"{self.login_service} cannot be reached right now.") from e
        except ClientAuthError as e:
            self.log_client_rejected(e)
            raise web.HTTPError(
                503, f"Sign-in with {self.login_service} is misconfigured; contact the operators."
            ) from e
        except ProviderError as e:
            self.log.error("Login failed at the token endpoint: %s", e)
            raise web.HTTPError(503, f"{self.login_service} did not answer; try again.") from e
        except InvalidGrant as e:
            self.log.warning("Login code refused by the provider: %s", e)
            raise web.HTTPError(403, "The login could not be completed; sign in again.") from e
        if params.get("grant_type") == "authorization_code" and self.verify_id_token:
            nonce = nonce_from_state_cookie(handler) if self.use_nonce and handler else None
            try:
                token_info["id_token_claims"] = await self.check_id_token(token_info, nonce)
            except IdTokenError as e:
                self.log.warning("Login refused: %s", e)
                raise web.HTTPError(403, "The login failed verification; sign in again.") from e
        return token_info

    async def check_id_token(self, token_info: dict, nonce: str | None = None) -> dict[str, Any]:
        id_token = token_info.get("id_token")
        if not id_token:
            raise IdTokenError("the token response has no id_token (is 'openid' in scope?)")
        return await self.metadata.verify_id_token(id_token, self.client_id, nonce=nonce)

    async def token_to_user(self, token_info: dict[str, Any]) -> dict[str, Any]:
        try:
            user_info = await super().token_to_user(token_info)
        except web.HTTPError:
            raise
        except Exception as e:
            self.log.error("Fetching userinfo failed: %s", type(e).__name__)
            raise web.HTTPError(503, f"{self.login_service} did not return your profile.") from e
        if not isinstance(user_info, dict):
            raise web.HTTPError(503, f"{self.login_service} returned an unusable profile.")
        # at login the verified id_token's claims are at hand; a refresh is checked in
        # update_auth_model, against the id_token it stores
        expected = (token_info.get("id_token_claims") or {}).get("sub")
        if expected is not None and user_info.get("sub") != expected:
            self.log.warning("Login refused: %s", self.subject_mismatch(expected, user_info))
            raise web.HTTPError(403, "The login failed verification; sign in again.")
        return user_info

    @staticmethod
    def subject_mismatch(expected: str | None, claims: dict[str, Any]) -> str:
        return (
            f"the userinfo answer is about subject {claims.get('sub')!r},"
            f" the id_token about {expected!r}"
        )

    def too_many_entitlements(self, claims: Any) -> str | None:
        """Why ``claims`` hold too many entitlements, or None (counted, never parsed)."""
        if not isinstance(claims, dict):
            return None
        count = count_entitlement_values(claims, self.entitlements_claims)
        if count <= self.max_entitlements:
            return None
        return (
            f"{self.login_service} released {count:,} entitlements, more than the"
            f" {self.max_entitlements:,} this hub accepts (max_entitlements)"
        )

    def identity_refusal(self, auth_state: dict[str, Any]) -> str | None:
        """Why the claims in ``auth_state`` must not be used, or None."""
        claims = auth_state.get(self.user_auth_state_key) or {}
        too_many = self.too_many_entitlements(claims)
        if too_many:
            return too_many
        id_token = auth_state.get("id_token")
        if not id_token or not isinstance(claims, dict):
            return None
        # verified when it arrived (login, refresh); read here only for its subject. One that
        # cannot be read was never verified (verify_id_token off): nothing to compare with.
        try:
            expected = jwt.decode(id_token, options={"verify_signature": False}).get("sub")
        except jwt.PyJWTError:
            return None
        if claims.get("sub") != expected:
            return self.subject_mismatch(expected, claims)
        return None

    def record_identity(self, auth_state: dict[str, Any]) -> str | None:
        """Record the account's identity (:attr:`identity_claim`) in ``auth_state``; why the
        claims must not be used when they are about another identity than the recorded one
        (a refresh keeps the recorded one), else None."""
        claims = auth_state.get(self.user_auth_state_key) or {}
        value = claims.get(self.identity_claim) if isinstance(claims, dict) else None
        current = make_identity(self.identity_claim, value)
        recorded = identity_of(auth_state)
        if current is None:
            return None  # nothing released to bind to: a login is checked in check_account
        if recorded is not None and recorded.startswith(f"{self.identity_claim}:"):
            if recorded != current:
                return f"the provider's answer is about another {self.identity_claim}"
        auth_state[IDENTITY_KEY] = current
        return None

    def check_account(self, name: str, stored: Any, auth_state: dict[str, Any]) -> None:
        """A login as the existing hub user ``name`` (stored auth_state ``stored``) with
        ``auth_state``: 403 when the account is bound to another identity. Keeps what
        ``migrate-users`` recorded for that identity."""
        bound = bound_identity(stored, self.identity_claim, self.user_auth_state_key)
        if bound is not None and bound != identity_of(auth_state):
            # the values are identifiers, not secrets; still, the name says enough
            self.log.warning(
                "Login of %r refused: the hub account is bound to another %s than the one"
                " that logged in (a username that came to name someone else: see"
                " `egi-notebooks migrate-users`)",
                name,
                self.identity_claim,
            )
            raise web.HTTPError(
                403,
                f"Login refused: the hub account {name} belongs to another"
                f" {self.login_service} identity. Please contact the operators of this"
                " service.",
            )
        carry_over(stored, auth_state)

    # ---- users and authorization ---------------------------------------------------------
    def user_info_to_username(self, user_info: dict[str, Any]) -> str:
        if callable(self.username_claim):
            return self.checked_username("username_claim", super().user_info_to_username(user_info))
        for claim in [self.username_claim, *self.username_fallback_claims]:
            value = user_info.get(claim)
            if isinstance(value, str) and value:
                return self.checked_username(claim, value)
        self.log.warning(
            "Login refused: none of the claims %s is released (check the client's scopes)",
            [self.username_claim, *self.username_fallback_claims],
        )
        raise web.HTTPError(
            403, f"{self.login_service} did not release a user identifier; login refused."
        )

    def checked_username(self, claim: str, value: Any) -> str:
        """``value`` as is, when it is usable (``usernames.usable_username``) under
        ``username_claim_pattern``; otherwise the login is refused."""
        if usable_username(value, self.username_claim_pattern):
            return value
        self.log.warning(
            "Login refused: claim %s is not a valid user identifier (%r does not match"
            " username_claim_pattern, or is not in Unicode NFKC normal form)",
            claim,
            value,
        )
        raise web.HTTPError(
            403, f"{self.login_service} released an unusable user identifier; login refused."
        )

    def build_auth_state_dict(self, token_info: dict, user_info: dict) -> dict[str, Any]:
        # login only (a refresh builds its auth_state itself): refuse with the reason
        too_many = self.too_many_entitlements(user_info)
        if too_many:
            self.log.warning("Login refused: %s", too_many)
            raise web.HTTPError(403, f"Login refused: {too_many}.")
        token_info = dict(token_info)
        token_info.pop("id_token_claims", None)
        auth_state = super().build_auth_state_dict(token_info, user_info)
        auth_state.update(self.expiry_fields(token_info))
        return auth_state

    @staticmethod
    def expiry_fields(token_info: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        expires_at = compute_expiry(token_info, now)
        return {
            "expires_at": expires_at,
            "expires_in": (expires_at - now) if expires_at else None,
            "refreshed_at": now,
        }

    def entitlements_from(self, auth_state: dict[str, Any]) -> list:
        """Every entitlement of the claims, trusted or not (patterns decide; see
        :meth:`update_auth_model`, which refuses more than ``max_entitlements`` first)."""
        claims = auth_state.get(self.user_auth_state_key) or {}
        if not isinstance(claims, dict):
            return []
        return entitlements_of(claims, self.entitlements_claims)

    async def update_auth_model(self, auth_model: dict[str, Any]) -> dict[str, Any]:
        """Record VOs, primary VO and entitlements in auth_state; admin from entitlements.

        Only trusted entitlements are recorded: the VOs, the hub groups and what the spawner
        and accounting read never come from a namespace or authority the hub does not trust.
        Claims that must not be used (too many entitlements; about another subject than the
        id_token) give no VO and mark the model ``refused``: a login is refused, a refresh
        ends the session.
        """
        auth_state = auth_model["auth_state"]
        refusal = self.identity_refusal(auth_state) or self.record_identity(auth_state)
        entitlements = [] if refusal else self.entitlements_from(auth_state)
        trust = self.entitlement_trust
        trusted = trust.filter(entitlements)
        vos = vos_of(trusted)
        auth_state["vos"] = vos
        auth_state["primary_vo"] = choose_primary_vo(vos, self.vo_priority)
        auth_state["entitlements"] = sorted({e.urn for e in trusted})
        if refusal:
            auth_model["refused"] = refusal
            if not auth_model.get("admin"):
                auth_model["admin"] = False
        elif self.admin_entitlements and not auth_model.get("admin"):
            patterns = [parse_pattern(p) for p in self.admin_entitlements]
            auth_model["admin"] = matches_any(patterns, entitlements, trust)
        return auth_model

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        """Hub groups mirror the user's VOs that the configuration names (:attr:`group_vos`)."""
        return set(auth_state.get("vos") or []) & self.group_vos

    async def check_allowed(self, username: str, auth_model: dict[str, Any]) -> bool:
        if auth_model is not None and auth_model.get("refused"):
            self.log.warning("Login of %s refused: %s", username, auth_model["refused"])
            raise web.HTTPError(403, f"Login refused: {auth_model['refused']}.")
        if await super().check_allowed(username, auth_model):
            return True
        if auth_model is None:
            return True
        auth_state = auth_model.get("auth_state") or {}
        if self.allowed_vos & set(auth_state.get("vos") or []):
            return True
        if self.allowed_entitlements:
            patterns = [parse_pattern(p) for p in self.allowed_entitlements]
            entitlements = self.entitlements_from(auth_state)
            if matches_any(patterns, entitlements, self.entitlement_trust):
                return True
        return False

    async def is_still_authorized(self, name: str, auth_model: dict[str, Any]) -> bool:
        if auth_model.get("refused"):
            self.log.warning("%s: refreshed claims refused: %s", name, auth_model["refused"])
            return False
        # upstream's check_blocked_users answers "allowed": True when the user is not blocked
        if not await maybe_future(self.check_blocked_users(name, auth_model)):
            return False
        return bool(await self.check_allowed(name, auth_model))

    # ---- refresh ------------------------------------------------------------------------
    # ``refresh_user`` is what JupyterHub calls on requests; ``refresh_tokens`` is the
    # single-flight refresh grant that it, the background refresher and the access-token
    # endpoint share.
    _refresh_backoff: RefreshBackoff | None = None

    @property
    def refresh_backoff(self) -> RefreshBackoff:
        """Per-user backoff of refresh grants while the provider fails (5 s, doubling up to
        ``background_refresh_max_backoff``), whoever asks: requests, the background refresh,
        the access-token endpoint. Consulted and updated by :meth:`refresh_tokens`."""
        if self._refresh_backoff is None:
            self._refresh_backoff = RefreshBackoff(
                first=min(5.0, self.background_refresh_max_backoff),
                maximum=self.background_refresh_max_backoff,
            )
        return self._refresh_backoff

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """No network call while the access token is valid beyond the leeway."""
        if not self.enable_auth_state:
            return True
        auth_state = await user.get_auth_state()
        if self.refresh_user_hook is not None:
            # upstream's private helpers here and in auth_model_from_refresh (oauthenticator
            # 17) call the operator's hooks as upstream does; tests/unit/auth/
            # test_upstream_contract.py fails when they change
            refreshed = await self._call_refresh_user_hook(user, auth_state)
            if refreshed is not None:
                return refreshed
        if not auth_state:
            # never logged in with the provider: the probe user, service accounts, users an
            # admin created through the API. Nothing to refresh; the tokens service still
            # gives them no token. (False would make JupyterHub 5.5 refuse their spawns.)
            return True
        if not auth_state.get("access_token"):
            # tokens dropped (VO lost, logout with revocation): log in again
            self.drop_revoked_token_request(handler)
            return False
        if not needs_refresh(auth_state, self.refresh_leeway):
            return True
        refreshed = await self.refresh_tokens(user)
        if refreshed is False:
            self.drop_revoked_token_request(handler)
        return refreshed

    def drop_revoked_token_request(self, handler: Any) -> None:
        """A request authenticated with an API token that is gone now (this refresh, or one
        it waited for, ended the user's authorization) gets no user: 403.

        JupyterHub 5.5 drops every token request whose refresh fails; 6.1 goes on with it as
        the user unless ``auth_refresh_strict``, but sends a request that was not token
        authenticated to a new login: the request is marked so. tests/unit/
        test_upstream_contract.py fails if the handler attributes used here change.
        """
        if handler is None or not getattr(handler, "_token_authenticated", False):
            return
        token = handler.get_auth_token()
        if token and orm.APIToken.find(handler.db, token) is None:
            handler._token_authenticated = False

    async def refresh_tokens(self, user: Any, force: bool = False) -> Any:
        """Single-flight refresh grant for ``user``: True, False (log in again) or an auth model.

        While :attr:`refresh_backoff` holds ``user`` back (unless ``force``) the provider is
        not asked: the stored access token is used while it is valid.
        """
        async with self._single_flight.hold(user.name):
            # another flight may have refreshed while we waited: decide on the stored state
            auth_state = await user.get_auth_state()
            if not auth_state or not auth_state.get("access_token"):
                return False
            if not force and not needs_refresh(auth_state, self.refresh_leeway):
                return True
            refresh_token = auth_state.get("refresh_token")
            if not refresh_token:
                return access_token_valid(auth_state)
            backoff = self.refresh_backoff
            if not force and backoff.waiting(user.name):
                return access_token_valid(auth_state)
            try:
                token_info = await self.post_token_endpoint(
                    self.build_refresh_token_request_params(refresh_token)
                )
                auth_model = await self.auth_model_from_refresh(user, auth_state, token_info)
            except InvalidGrant as e:
                # the stored token is dead: no quick retries of it (a new login clears this)
                backoff.failed(user.name)
                self.log.info("Refresh token of %s refused (%s): login required", user.name, e)
                return False
            except ClientAuthError as e:
                self.log_client_rejected(e)
                self.log_backoff(user.name, backoff.failed(user.name))
                # the stored tokens stay: they work again once the operator fixes the client
                return access_token_valid(auth_state)
            except (ProviderError, DiscoveryError, IdTokenError, web.HTTPError) as e:
                self.log_backoff(user.name, backoff.failed(user.name))
                return self.on_refresh_unavailable(user, auth_state, e)
            backoff.succeeded(user.name)
            self._provider_warned.discard(user.name)
            if await self.is_still_authorized(user.name, auth_model):
                await user.save_auth_state(auth_model["auth_state"])
                await self.on_tokens_refreshed(user, auth_model["auth_state"])
                return auth_model
            # the hub's own credentials first, in one commit: no request made with them is
            # the user's from here on, while the provider's tokens are revoked
            end_hub_access(user)
            await self.drop_authorization(user, auth_model["auth_state"])
            # returning False makes the hub apply nothing: VO groups and admin go now
            apply_auth_model(user, auth_model, self.manage_groups)
        # outside the refresh lock: stopping servers takes a while and runs the spawner's code
        await self.on_authorization_lost(user, self.authorization_lost_reason(user, auth_model))
        return False

    def authorization_lost_reason(self, user: Any, auth_model: dict[str, Any]) -> str:
        """Why a refresh ended ``user``'s authorization, for the log (never a token)."""
        if auth_model.get("refused"):
            return str(auth_model["refused"])
        if user.name in self.blocked_users:
            return "blocked"
        return "no allowed VO or entitlement left"

    async def on_authorization_lost(self, user: Any, reason: str) -> None:
        """``user`` is no longer authorized, found by a refresh (background, a request, the
        tokens service): log it and stop their servers
        (:attr:`stop_servers_on_authorization_loss`).

        Their hub API tokens, OAuth codes and login cookies are gone already, their provider
        tokens revoked (under the refresh lock, before this is called without it).
        """
        spawners = getattr(user, "spawners", {})  # not a hub user: tests, scripts
        running = [name for name, spawner in spawners.items() if spawner.active]
        stop = self.stop_servers_on_authorization_loss
        self.log.warning(
            "%s lost authorization (%s): hub API tokens revoked; %s servers: %s",
            user.name,
            reason,
            "stopping" if stop else "leaving running",
            ", ".join(repr(name) if name else "(default)" for name in running) or "none",
        )
        if stop and running:
            await asyncio.gather(*(self.stop_server(user, name) for name in running))

    async def stop_server(self, user: Any, name: str) -> None:
        """Stop ``user``'s server ``name`` as the hub does: proxy route, then ``User.stop``
        (the spawner, the server's token and OAuth client, the hooks). A spawn in progress is
        stopped once it is over; a stop in progress is left to finish."""
        spawner = user.spawners.get(name)
        if spawner is None:
            return
        spawning = getattr(spawner, "_spawn_future", None)  # JupyterHub's spawn in progress
        if spawner.pending == "spawn" and spawning is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(spawning)
        if spawner.pending or not spawner.active:
            return
        try:
            proxy = getattr(self.parent, "proxy", None)
            if proxy is not None:
                await proxy.delete_user(user, name)
            await user.stop(name)
        except Exception:
            self.log.exception("Could not stop server %r of %s", name, user.name)

    def log_backoff(self, name: str, delay: float) -> None:
        self.log.info("Token refresh of %s failed; next try in %.0f s at the earliest", name, delay)

    def log_client_rejected(self, error: Exception) -> None:
        """One error per ``client_error_log_interval``: the hub's client credentials are wrong.

        Every user's refresh fails the same way, so one line for all of them (never the secret).
        """
        now = time.monotonic()
        last = self._client_error_logged_at
        if last is not None and now - last < self.client_error_log_interval:
            return
        self._client_error_logged_at = now
        self.log.error(
            "%s refused the hub's client credentials (%s): check %s.client_id (%r) and"
            " client_secret (wrong, or rotated at the provider), and that the client may use"
            " the refresh_token grant. Sessions and refresh tokens are kept and refreshes are"
            " retried; a user must log in again once their access token expires."
            " (logged at most every %.0f s)",
            self.login_service,
            error,
            type(self).__name__,
            self.client_id,
            self.client_error_log_interval,
        )

    def on_refresh_unavailable(self, user: Any, auth_state: dict, error: Exception) -> bool:
        """The provider could not refresh: keep the session while the access token is valid."""
        valid = access_token_valid(auth_state)
        if user.name not in self._provider_warned:
            self._provider_warned.add(user.name)
            self.log.warning(
                "Cannot refresh tokens of %s: %s; %s",
                user.name,
                error,
                "keeping the current token until it expires" if valid else "login required",
            )
        return valid

    async def auth_model_from_refresh(
        self, user: Any, auth_state: dict[str, Any], token_info: dict[str, Any]
    ) -> dict[str, Any]:
        new_state = dict(auth_state)  # keys other code added survive
        fresh = await self.claims_after_refresh(token_info)
        if fresh is None:  # nothing fresh to go by (userinfo_on_refresh = never, no id_token)
            claims = dict(auth_state.get(self.user_auth_state_key) or {})
        else:
            # the verified answer is authoritative: a claim it leaves out is gone (Check-in
            # sends no entitlement claim at all to a user who has none left)
            claims = dict(fresh)
        # no rotation / no id_token in the response: keep the previous ones
        token_info = dict(token_info)
        for key in ("refresh_token", "id_token"):
            if not token_info.get(key):
                token_info[key] = auth_state.get(key)
        scope = token_info.get("scope", auth_state.get("scope") or [])
        new_state.update(
            {
                "access_token": token_info["access_token"],
                "refresh_token": token_info["refresh_token"],
                "id_token": token_info["id_token"],
                "scope": scope.split(" ") if isinstance(scope, str) else scope,
                "token_response": token_info,
                self.user_auth_state_key: claims,
                **self.expiry_fields(token_info),
            }
        )
        admin = True if user.name in self.admin_users else None
        auth_model = {"name": user.name, "admin": admin, "auth_state": new_state}
        if self.modify_auth_state_hook is not None:
            auth_model["auth_state"] = await self._call_modify_auth_state_hook(new_state)
        auth_model = await self.update_auth_model(auth_model)
        if self.manage_groups:
            # upstream's private helper (oauthenticator 17): groups + admin_groups, as at login
            auth_model = await self._apply_managed_groups(auth_model)
        return auth_model

    async def claims_after_refresh(self, token_info: dict[str, Any]) -> dict[str, Any] | None:
        """The user's current claims after a refresh, or None when nothing fresh is known.

        ``auto``: the verified id_token of the refresh response when it carries an entitlement
        claim, else userinfo (Check-in's id_tokens never carry entitlements: their absence
        there says nothing). ``always``: userinfo. ``never``: the verified id_token only.
        """
        mode = self.userinfo_on_refresh
        if token_info.get("id_token") and self.verify_id_token:
            # verified in every mode: it is stored (logout hint, subject checks) either way
            claims = await self.check_id_token(token_info)
            if mode == "never" or (
                mode == "auto" and any(name in claims for name in self.entitlements_claims)
            ):
                return claims
        if mode == "never":
            return None
        return await self.token_to_user(token_info)

    async def drop_authorization(self, user: Any, auth_state: dict[str, Any]) -> None:
        """The user lost the VO/entitlement: revoke the new tokens and forget them."""
        self.log.warning("%s is no longer authorized (VO or entitlement lost)", user.name)
        await self.forget_tokens(user, auth_state)

    async def on_tokens_refreshed(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Run ``tokens_changed_hook`` (EGISpawner's writes the token Secrets) after the
        user's tokens changed; an error in it is logged: the tokens are stored already."""
        hook = getattr(self, "tokens_changed_hook", None)
        if hook is None:
            return  # a hub without EGISpawner: nobody to tell
        try:
            await maybe_future(hook(self, user, auth_state))
        except Exception:
            self.log.exception("Error in tokens_changed_hook for %s", user.name)

    # ---- logout, user deletion, replaced grants ------------------------------------------
    # Every change of a user's stored tokens here runs under the user's refresh lock
    # (``self._single_flight``) and re-reads the stored auth_state inside it: a refresh in
    # flight would otherwise present a refresh token being revoked (``invalid_grant``), or
    # rotate it and save the new, unrevoked tokens back after the logout.
    _host_fallback_warned = False

    async def logout_tokens(self, user: Any, handler: Any) -> str | None:
        """Revoke and forget the tokens as configured; the end_session URL to redirect to."""
        auth_state = await user.get_auth_state() or {}
        id_token = auth_state.get("id_token")
        if self.should_revoke_on_logout(user):
            if auth_state.get("access_token"):
                await self.forget_user_tokens(user)
            # the hub tokens of the user's API logins end with the revoked session
            await end_jwt_logins(self, user)
        if self.logout_redirect_url or not self.end_session_redirect:
            return None
        endpoint = await self.get_endpoint("end_session_endpoint")
        if not endpoint:
            return None
        return end_session_url(
            endpoint, self.client_id, id_token, self.post_logout_uri_for(handler)
        )

    async def forget_user_tokens(self, user: Any) -> None:
        """Revoke and forget whatever tokens ``user`` has stored now (takes the refresh lock)."""
        async with self._single_flight.hold(user.name):
            auth_state = await user.get_auth_state() or {}
            if auth_state.get("access_token") or auth_state.get("refresh_token"):
                await self.forget_tokens(user, auth_state)
            self.refresh_backoff.succeeded(user.name)

    async def forget_tokens(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Revoke at the provider, drop from auth_state, empty the token Secrets.

        The caller holds the user's refresh lock (a refresh, or :meth:`forget_user_tokens`).
        """
        await revoke_auth_state_tokens(self, auth_state)
        stripped = strip_tokens(auth_state)
        await user.save_auth_state(stripped)
        await self.on_tokens_refreshed(user, stripped)

    async def delete_user(self, user: Any) -> None:
        """A deleted user's tokens are revoked at the provider."""
        async with self._single_flight.hold(user.name):
            auth_state = await user.get_auth_state() or {}
            if auth_state.get("access_token") or auth_state.get("refresh_token"):
                await revoke_auth_state_tokens(self, auth_state)
                # a refresh waiting for the lock then finds nothing to refresh
                await user.save_auth_state(strip_tokens(auth_state))
            self.refresh_backoff.succeeded(user.name)
        super().delete_user(user)

    async def get_authenticated_user(self, handler: Any, data: Any) -> Any:
        """A login that replaces a user's stored grant revokes the replaced one."""
        authenticated = await super().get_authenticated_user(handler, data)
        if not authenticated or handler is None or not authenticated.get("auth_state"):
            return authenticated
        find_user = getattr(handler, "find_user", None)
        user = find_user(authenticated["name"]) if find_user is not None else None
        if user is not None:  # a first login has nothing to replace
            self.check_account(user.name, await user.get_auth_state(), authenticated["auth_state"])
            await self.replace_grant(user, authenticated["auth_state"])
        return authenticated

    async def replace_grant(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Store a new login's ``auth_state``; revoke the previous grant if it is another one.

        Without it every login leaves a live offline refresh token (a year on Check-in) at
        the provider. The new state is saved here, under the refresh lock, before the old
        grant is revoked: a background refresh never presents the revoked token, and one
        that ran just before has its rotated token revoked instead. The hub saves the same
        state again right after.
        """
        async with self._single_flight.hold(user.name):
            old = await user.get_auth_state() or {}
            if BEARERS_KEY in old:  # the user's API logins stay checkable
                auth_state.setdefault(BEARERS_KEY, old[BEARERS_KEY])
            await user.save_auth_state(auth_state)
            await self.on_tokens_refreshed(user, auth_state)
            self.refresh_backoff.succeeded(user.name)
            old_refresh = old.get("refresh_token")
            if not old_refresh or old_refresh == auth_state.get("refresh_token"):
                return  # no previous grant, or the same one
            replaced = {"refresh_token": old_refresh}
            if old.get("access_token") != auth_state.get("access_token"):
                replaced["access_token"] = old.get("access_token")
            if not await revoke_auth_state_tokens(self, replaced):
                self.log.warning("The grant %s's new login replaced was not revoked", user.name)

    def should_revoke_on_logout(self, user: Any) -> bool:
        if self.revoke_on_logout == "always":
            return True
        if self.revoke_on_logout == "never":
            return False
        return not any(s.active for s in user.spawners.values())

    def post_logout_uri_for(self, handler: Any) -> str:
        """Where the provider sends the browser after logout: the hub's public login page.

        Built from configuration (``post_logout_redirect_uri``, ``JupyterHub.public_url``,
        ``oauth_callback_url``), not from the request's Host header, which the client chooses.
        """
        if self.post_logout_redirect_uri:
            return self.post_logout_redirect_uri
        settings = getattr(handler, "settings", None) or {}
        login_url = settings.get("login_url") or "/hub/login"
        public = settings.get("public_url")
        if public and getattr(public, "netloc", ""):
            return f"{public.scheme}://{public.netloc}{login_url}"
        callback = urlsplit(self.oauth_callback_url or "")
        if callback.scheme and callback.netloc:
            return f"{callback.scheme}://{callback.netloc}{login_url}"
        if not self._host_fallback_warned:
            self._host_fallback_warned = True
            self.log.warning(
                "%s: neither post_logout_redirect_uri, JupyterHub.public_url nor"
                " oauth_callback_url is set: the post-logout redirect follows the request's"
                " Host header",
                type(self).__name__,
            )
        request = handler.request
        return f"{request.protocol}://{request.host}{login_url}"
