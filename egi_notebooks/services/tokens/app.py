"""``egi-notebooks tokens``: serves ``GET {prefix}token`` -> ``{"access_token", "expires_at"}``.

The caller authenticates with its own hub token (``Authorization: token ...``; tokens in
URLs are refused). The service asks the hub who the caller is (JupyterHub's ``HubAuth``,
cached a few seconds), applies
:mod:`.policy`, and reads the owner's current access token from the hub endpoint that the
authenticator adds (``custom:egi-notebooks:access-tokens``; the refresh token never leaves
the hub), forwarding the caller's token in the request body: the hub answers only while that
token is live (a revoked token is refused on its next call) and, for a server's token, the
one the hub gave that server, and refuses it while the server is shared or has been since it
started (until it restarts: :mod:`egi_notebooks.shared_servers`), asked of the hub's database
at every request. Nothing is cached but the callers' identities, so a refresh is visible at
once.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any
from urllib.parse import quote

import httpx
from jupyterhub.services.auth import HubAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer

from ..hub import HubAPIError, HubClient, HubServiceApp, service_application
from .policy import MINTED_BY_ANOTHER, SERVER_SHARED, SERVER_TOKEN_REQUIRED, Refused, grant_for

# how the hub's access-token endpoint starts its refusals of the caller's token, and of a
# server that was shared (egi_notebooks.auth.token_api)
CALLER_REFUSED_PREFIXES = ("The caller's token", "The caller's server was shared")


def caller_token(request: Any) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


def caller_refusal(response: httpx.Response) -> str | None:
    """The hub's reason when it refused the caller's token, not the service's own (a missing
    role); ``None`` otherwise."""
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        return None
    if isinstance(message, str) and message.startswith(CALLER_REFUSED_PREFIXES):
        return message
    return None


class TokenHandler(web.RequestHandler):
    @property
    def service(self) -> TokensApp:
        return self.settings["tokens_app"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else ""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message or self._reason}))

    async def get(self) -> None:
        if "token" in self.request.query_arguments:
            raise web.HTTPError(400, "send the token in the Authorization header, never in a URL")
        token = caller_token(self.request)
        if token is None:
            raise web.HTTPError(401, "Authorization: token <your server's API token> required")
        identity = await self.service.identify(token)
        if identity is None:
            raise web.HTTPError(403, "invalid or expired token")
        try:
            grant = grant_for(identity, self.get_query_argument("user", None))
        except Refused as e:
            raise web.HTTPError(403, str(e)) from None
        body = await self.service.access_token_of(grant.owner, token, grant.server_token)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"service": "egi-notebooks tokens", "token_path": "token"}))


class TokensApp(HubServiceApp):
    name = "egi-notebooks-tokens"
    description = "Hands notebooks their owner's current access token."

    identity_cache_seconds = Float(
        5,
        config=True,
        help="""How long a caller's identity (its name and scopes, not its access token) is
        cached: a change of the caller's roles shows after this long. A revoked token is
        refused at once regardless (the hub checks the token on every call).""",
    )
    identity_cache_size = Integer(
        10_000,
        config=True,
        help="""Unused: the identities are kept by JupyterHub's HubAuth, which forgets each
        one identity_cache_seconds after its lookup (kept so that existing configurations
        load).""",
    )

    aliases = {"log-level": "Application.log_level"}

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        # HubAuth counts whole seconds and reads 0 as "forever": round down, and 0 is no cache
        self.hub_auth = HubAuth(
            api_url=self.hub_api_url,
            api_token=self.api_token,
            cache_max_age=max(1, math.floor(self.identity_cache_seconds)),
        )
        self.hub: HubClient | None = None

    async def identify(self, token: str) -> dict | None:
        """The hub's model of the token's owner (``GET /hub/api/user`` as the caller), ``None``
        for a token the hub does not accept."""
        lookup = self.hub_auth.user_for_token(
            token, use_cache=self.identity_cache_seconds >= 1, sync=False
        )
        try:
            return await asyncio.wait_for(lookup, self.request_timeout)
        except TimeoutError:
            raise web.HTTPError(503, "the hub cannot be reached") from None
        except web.HTTPError as e:
            # HubAuth's messages name the hub's internal URL and host: not for callers
            raise web.HTTPError(503, "the hub could not identify the caller") from e

    async def access_token_of(
        self, user: str, caller_token: str, server_token: bool
    ) -> dict[str, Any]:
        """``user``'s access token, if the hub confirms ``caller_token`` is still a token of
        ``user`` (and, with ``server_token``, the one it gave a server of ``user``)."""
        path = f"/egi-notebooks/users/{quote(user, safe='')}/access-token"
        # in the body, not a header: the hub logs the headers of failed requests
        body = {"caller_token": caller_token, "server": server_token}
        hub = self.hub
        if hub is None:
            raise web.HTTPError(503, "the tokens service is starting")
        try:
            response = await hub.request("POST", path, json=body)
        except HubAPIError as e:
            raise web.HTTPError(503, "the hub cannot be reached") from e
        refusal = caller_refusal(response) if response.status_code == 403 else None
        if refusal is not None:
            if "minted" in refusal:
                raise web.HTTPError(403, MINTED_BY_ANOTHER)
            if "was shared" in refusal:
                raise web.HTTPError(403, SERVER_SHARED)
            if "server" in refusal:
                raise web.HTTPError(403, SERVER_TOKEN_REQUIRED)
            raise web.HTTPError(403, "invalid or expired token")
        if response.status_code == 404:
            raise web.HTTPError(404, "no valid access token: log in to the hub again")
        if response.status_code != 200:
            self.log.error("hub access-token endpoint answered HTTP %s", response.status_code)
            raise web.HTTPError(503, "the hub could not give a token")
        data = response.json()
        return {"access_token": data["access_token"], "expires_at": data["expires_at"]}

    def make_web_app(self) -> web.Application:
        prefix = self.service_prefix
        return service_application(
            [(prefix + "token", TokenHandler), (prefix + "?", HealthHandler)],
            tokens_app=self,
        )

    async def serve(self) -> None:
        server = HTTPServer(self.make_web_app(), xheaders=True)
        ip, port = self.listen(server)
        self.hub = self.make_hub_client()
        self.log.info(
            "tokens service at %s%s, listening on %s:%s",
            self.service_url, self.service_prefix, ip, port,
        )  # fmt: skip
        try:
            await asyncio.Event().wait()
        finally:
            server.stop()
            await self.hub.aclose()

    def start(self) -> None:
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    TokensApp.launch_instance(argv)
    return 0
