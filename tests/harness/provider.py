"""A local OpenID Connect provider as a real process, for tests and benchmarks.

Two implementations behind one API (``ProviderProcess(implementation=...)``):

- ``"certified"`` (the default): the certified npm ``oidc-provider`` configured as EGI
  Check-in (``devtools/oidc-provider/checkin.mjs``): the happy paths (code flow with PKCE,
  rotating refresh tokens, revocation, introspection, RP-initiated logout, opaque access
  tokens unless ``jwt_access_tokens`` is set, entitlements in userinfo and introspection only).
- ``"ours"``: the project's own provider (``tests/harness/faulty_provider``, not in the
  package), for fault injection (``set_fault``: down, slow, garbage, HTML 500). A test that
  needs it says so with ``@pytest.mark.provider("ours")`` or ``ProviderProcess("ours")``.

Both read the same configuration document (``make_provider_config``) and answer the same
admin API (users, client secret, lifetimes, stats). ``ProviderProcess`` does not need pytest;
the fixtures at the bottom are defined only when pytest is importable. The provider listens on
``--port 0`` and announces its issuer on stdout, so there is no race for a free port.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import httpx

from egi_notebooks.demo.accounts import demo_users, make_config
from egi_notebooks.demo.processes import (
    ChildProcess,
    start_announcing_provider,
    start_checkin_provider,
)

from .faulty_provider.handlers import PATHS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/hub/oauth_callback"
DEFAULT_POST_LOGOUT_URI = "http://127.0.0.1:8000/hub/login"
DEFAULT_SCOPE = "openid profile email offline_access eduperson_entitlement voperson_id"
HTTP_TIMEOUT = 10.0
CERTIFIED = "certified"
OURS = "ours"
IMPLEMENTATIONS = (CERTIFIED, OURS)
# what a ProviderProcess runs unless told: EGI Check-in's behaviour
DEFAULT_IMPLEMENTATION = CERTIFIED

__all__ = [
    "CERTIFIED",
    "DEFAULT_CONFIG",
    "OURS",
    "ProviderProcess",
    "demo_users",
    "make_provider_config",
    "pkce_pair",
    "provider_factory",
]


def make_provider_config(
    redirect_uri: str | list[str],
    post_logout_uri: str | list[str],
    users: dict[str, dict[str, Any]] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """One client ``hub`` with a random secret, a random admin token, the demo users
    (alice, bob, admin, mallory; password = login) unless ``users`` is given; ``kw`` sets
    top-level keys (lifetimes, ``jwt_access_tokens``, ``realm_path``, ``client_secret``...)."""
    return make_config(redirect_uri, post_logout_uri, users=users, **kw)


# A default configuration for a hub at 127.0.0.1:8000; deep-copy it before changing it.
DEFAULT_CONFIG: dict[str, Any] = make_provider_config(DEFAULT_REDIRECT_URI, DEFAULT_POST_LOGOUT_URI)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def start_provider(
    config_path: Path, log_path: Path, cwd: Path, env: dict | None = None, timeout: float = 30
) -> tuple[ChildProcess, str]:
    """The project's own provider as a child on a port of its choosing (``--port 0``): the
    child and the issuer it announces once it listens. ``env`` must put the repository root
    on ``PYTHONPATH`` (the module lives in the test harness, not in the package)."""
    argv = [sys.executable, "-m", "tests.harness.faulty_provider", "--port", "0"]
    argv += ["--config", str(config_path)]
    return start_announcing_provider(argv, log_path, cwd, env, timeout)


class ProviderProcess:
    def __init__(self, implementation: str | None = None) -> None:
        """``implementation``: ``"certified"`` or ``"ours"`` (None: ``DEFAULT_IMPLEMENTATION``)."""
        implementation = implementation or DEFAULT_IMPLEMENTATION
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}: {implementation!r}")
        self.implementation = implementation
        self.child: ChildProcess | None = None
        self.workdir: Path | None = None
        self.config: dict[str, Any] = {}
        self.issuer = ""
        self.port = 0
        self.last_log = ""
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """A kept-alive client for calls to this provider (making a new one costs ~20-60 ms)."""
        if self._http is None:
            self._http = httpx.Client(timeout=HTTP_TIMEOUT)
        return self._http

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, config: dict[str, Any], timeout: float = 15.0) -> ProviderProcess:
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="egi-provider-"))
        config_path = self.workdir / "provider.json"
        config_path.write_text(json.dumps(config))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        starter = start_checkin_provider if self.implementation == CERTIFIED else start_provider
        try:
            self.child, self.issuer = starter(
                config_path, self.workdir / "provider.log", self.workdir, env, timeout
            )
        except BaseException:
            self.stop()
            raise
        self.port = urlsplit(self.issuer).port or 0
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.child is not None:
            self.child.stop(timeout)
        if self.workdir is not None:
            self.last_log = self.log()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> ProviderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        """The provider's output (its log) so far."""
        if self.workdir is None:
            return self.last_log
        return self.child.log() if self.child is not None else ""

    # -- addresses and credentials ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, name: str) -> str:
        """URL of an endpoint by its stats name (discovery, token, userinfo, ...)."""
        return self.issuer + PATHS[name]

    @property
    def admin_token(self) -> str:
        return self.config.get("admin_token", "")

    @property
    def client(self) -> dict[str, Any]:
        return self.config["clients"][0]

    @property
    def client_id(self) -> str:
        return self.client["client_id"]

    @property
    def client_secret(self) -> str:
        return self.client["client_secret"]

    def client_auth(
        self, data: dict[str, Any], client_id: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """``httpx`` arguments for a form POST as ``client_id`` authenticates: HTTP Basic, or
        the credentials in the form for a client registered with ``client_secret_post``."""
        client_id = client_id or self.client_id
        registered = next((c for c in self.config["clients"] if c["client_id"] == client_id), {})
        secret = secret or registered.get("client_secret", "")
        if registered.get("token_endpoint_auth_method") == "client_secret_post":
            return {"data": {**data, "client_id": client_id, "client_secret": secret}}
        return {"data": data, "auth": (client_id, secret)}

    # -- admin API -------------------------------------------------------------------------------
    def _admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @staticmethod
    def _checked(r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise RuntimeError(f"admin API {r.request.method} {r.request.url.path}: {r.text}")
        return r.json() if r.content else None

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, self.url + path, json=body, headers=self._admin_headers())
        return self._checked(r)

    async def aadmin(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            r = await client.request(
                method, self.url + path, json=body, headers=self._admin_headers()
            )
        return self._checked(r)

    # each helper is one (method, path, body) triple, run sync or async
    @staticmethod
    def _set_claims(login: str, claims: dict, password: str | None = None) -> tuple:
        body: dict[str, Any] = {"claims": claims}
        if password is not None:
            body["password"] = password
        return "PUT", f"/_admin/users/{quote(login, safe='')}", body

    @staticmethod
    def _patch_claims(login: str, claims: dict) -> tuple:
        return "PATCH", f"/_admin/users/{quote(login, safe='')}", {"claims": claims}

    @staticmethod
    def _fault(
        mode: str = "none",
        delay: float = 0,
        endpoints: list[str] | None = None,
        count: int | None = None,
    ) -> tuple:
        body = {"mode": mode, "delay": delay, "endpoints": endpoints, "count": count}
        return "PUT", "/_admin/fault", body

    @staticmethod
    def _client_secret(client_id: str, secret: str) -> tuple:
        return "PATCH", f"/_admin/clients/{quote(client_id, safe='')}", {"client_secret": secret}

    def set_client_secret(self, secret: str) -> Any:
        """Rotate the client secret at the provider (as an operator would at Check-in).

        The helpers of this class (``introspect``, ``login_tokens``) use the new one."""
        answer = self.admin(*self._client_secret(self.client_id, secret))
        self.client["client_secret"] = secret
        return answer

    async def aset_client_secret(self, secret: str) -> Any:
        answer = await self.aadmin(*self._client_secret(self.client_id, secret))
        self.client["client_secret"] = secret
        return answer

    def set_claims(self, login: str, claims: dict, password: str | None = None) -> Any:
        return self.admin(*self._set_claims(login, claims, password))

    async def aset_claims(self, login: str, claims: dict, password: str | None = None) -> Any:
        return await self.aadmin(*self._set_claims(login, claims, password))

    def patch_claims(self, login: str, claims: dict) -> Any:
        return self.admin(*self._patch_claims(login, claims))

    async def apatch_claims(self, login: str, claims: dict) -> Any:
        return await self.aadmin(*self._patch_claims(login, claims))

    def delete_user(self, login: str) -> None:
        self.admin("DELETE", f"/_admin/users/{quote(login, safe='')}")

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "/_admin/stats")

    async def astats(self) -> dict[str, Any]:
        return await self.aadmin("GET", "/_admin/stats")

    def reset_stats(self) -> None:
        self.admin("POST", "/_admin/stats/reset")

    async def areset_stats(self) -> None:
        await self.aadmin("POST", "/_admin/stats/reset")

    def _check_faults(self) -> None:
        if self.implementation != OURS:
            raise RuntimeError(
                f'fault injection needs ProviderProcess(implementation="{OURS}"), '
                f"not {self.implementation!r}"
            )

    def set_fault(self, mode: str = "none", **kw: Any) -> Any:
        """``mode`` with ``delay``, ``endpoints`` (default all OIDC ones), ``count``."""
        self._check_faults()
        return self.admin(*self._fault(mode, **kw))

    async def aset_fault(self, mode: str = "none", **kw: Any) -> Any:
        self._check_faults()
        return await self.aadmin(*self._fault(mode, **kw))

    def settings(self, **kw: Any) -> dict[str, Any]:
        return self.admin("PUT", "/_admin/settings", kw)

    async def asettings(self, **kw: Any) -> dict[str, Any]:
        return await self.aadmin("PUT", "/_admin/settings", kw)

    def token_counts(self, login: str) -> dict[str, int]:
        return self.admin("GET", f"/_admin/tokens/{quote(login, safe='')}")

    def _introspect_args(self, token: str, client_id: str | None, secret: str | None) -> dict:
        return {
            "url": self.endpoint("introspection"),
            **self.client_auth({"token": token}, client_id, secret),
        }

    def introspect(
        self, token: str, client_id: str | None = None, client_secret: str | None = None
    ) -> dict[str, Any]:
        r = self.http.post(**self._introspect_args(token, client_id, client_secret))
        r.raise_for_status()
        return r.json()

    async def aintrospect(
        self, token: str, client_id: str | None = None, client_secret: str | None = None
    ) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            r = await client.post(**self._introspect_args(token, client_id, client_secret))
        r.raise_for_status()
        return r.json()

    # -- a client of its own: the code flow without a hub ------------------------------------------
    def authorize(
        self, login: str, password: str | None = None, http: httpx.Client | None = None, **params
    ) -> httpx.Response:
        """Walk the login form; returns the provider's final answer (a redirect on success).

        ``params`` are authorization request parameters (defaults: this client, its first
        redirect_uri, response_type=code, DEFAULT_SCOPE)."""
        query = {
            "client_id": self.client_id,
            "redirect_uri": self.client["redirect_uris"][0],
            "response_type": "code",
            "scope": DEFAULT_SCOPE,
            **params,
        }
        if http is None:
            # a new browser for each login: in the certified provider's session, another
            # account's login would first end (revoke) the previous one's
            http = self.http
            http.cookies.clear()
        form = self._until_away(http, http.get(self.endpoint("authorization"), params=query))
        if form.status_code != 200 or "<form" not in form.text:
            return form
        fields = {
            html.unescape(name): html.unescape(value)
            for name, value in re.findall(
                r'<input type="hidden" name="([^"]*)" value="([^"]*)"', form.text
            )
        }
        fields.update(username=login, password=login if password is None else password)
        action = html.unescape(re.search(r'<form[^>]*action="([^"]*)"', form.text).group(1))
        return self._until_away(http, http.post(self.url + action, data=fields))

    def _until_away(self, http: httpx.Client, response: httpx.Response) -> httpx.Response:
        """Follow redirects within the provider (the certified one goes through interaction
        and resume pages); the answer is a page, or a redirect elsewhere (to the client)."""
        from .login import auto_submitted

        for _ in range(10):
            submitted = auto_submitted(http, response)
            if submitted is not None:
                response = submitted
                continue
            if response.status_code not in (302, 303) or not response.headers[
                "location"
            ].startswith(("/", self.url)):
                return response
            response = http.get(urljoin(str(response.url), response.headers["location"]))
        raise RuntimeError("too many redirects at the provider")

    def get_code(self, login: str, password: str | None = None, **params: Any) -> str:
        r = self.authorize(login, password, **params)
        if r.status_code not in (302, 303):
            raise RuntimeError(f"login of {login} failed: {r.status_code} {r.text[:300]}")
        query = parse_qs(urlsplit(r.headers["location"]).query)
        if "code" not in query:
            raise RuntimeError(f"login of {login} failed: {r.headers['location']}")
        return query["code"][0]

    def login_tokens(self, login: str, scope: str = DEFAULT_SCOPE, **params: Any) -> dict:
        """A token response for ``login`` through the full code flow with PKCE S256."""
        verifier, challenge = pkce_pair()
        code = self.get_code(
            login, scope=scope, code_challenge=challenge, code_challenge_method="S256", **params
        )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params.get("redirect_uri", self.client["redirect_uris"][0]),
            "code_verifier": verifier,
        }
        r = self.http.post(self.endpoint("token"), **self.client_auth(form))
        r.raise_for_status()
        return r.json()


def marked_implementation(request: Any) -> str | None:
    """The implementation a test asks for with ``@pytest.mark.provider("ours")`` (on the test,
    its class or its module's ``pytestmark``), or None."""
    marker = request.node.get_closest_marker("provider")
    return marker.args[0] if marker is not None else None


try:
    import pytest
except ImportError:  # the demo may run without the test extra
    pytest = None

if pytest is not None:

    @pytest.fixture
    def provider_factory(request):
        """``start(config=None, implementation=None, **kw) -> ProviderProcess``; stopped at
        teardown. ``implementation`` defaults to the test's ``provider`` marker.

        Without ``config``: ``make_provider_config(DEFAULT_REDIRECT_URI,
        DEFAULT_POST_LOGOUT_URI, **kw)``."""
        started: list[ProviderProcess] = []

        def start(
            config: dict[str, Any] | None = None, implementation: str | None = None, **kw: Any
        ) -> ProviderProcess:
            if config is None:
                config = make_provider_config(DEFAULT_REDIRECT_URI, DEFAULT_POST_LOGOUT_URI, **kw)
            provider = ProviderProcess(implementation or marked_implementation(request))
            started.append(provider)
            return provider.start(config)

        yield start
        for provider in started:
            provider.stop()
