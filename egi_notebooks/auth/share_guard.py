"""JupyterHub's share API, with the server's spawner asked first.

JupyterHub creates a share or share code in one request and has no hook around it. These
handlers take the same URLs (the authenticator's handlers come before JupyterHub's own, and
tornado takes the first match) and, once JupyterHub's ``shares`` scope check has passed, ask
the server's spawner to get ready before JupyterHub's own ``post`` makes the share:

- ``before_share()`` (optional, may be async) returns why the server may not be shared (the
  share is refused, ``403``) or ``None``; it withholds and revokes the server's tokens before
  returning. If it raises, the share is refused (``503``): a share never goes ahead with
  tokens the spawner could not take back.
- ``after_share()`` (optional, may be async) runs once the request is over, share made or not.

A spawner without these methods (a stock KubeSpawner) changes nothing. This module knows the
spawner only through these two methods.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.apihandlers.shares import ServerShareAPIHandler, ServerShareCodeAPIHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import maybe_future
from tornado import web

#: JupyterHub's URL patterns for the two handlers (under the hub's prefix), ours first
SHARE_PATHS = (r"/api/shares/([^/]+)", r"/api/shares/([^/]+)/([^/]*)")
SHARE_CODE_PATHS = (r"/api/share-codes/([^/]+)", r"/api/share-codes/([^/]+)/([^/]*)")


class _GuardedShare:
    """Mixin: run the spawner's preparation between the scope check and the share."""

    # provided by JupyterHub's handler classes
    log: Any
    find_user: Any

    def _spawner_of(self, user_name: str, server_name: str) -> Any:
        user = self.find_user(user_name)
        if user is None or server_name not in user.orm_spawners:
            return None  # JupyterHub's post answers 404
        return user.spawners[server_name]

    async def _guarded(self, post: Any, user_name: str, server_name: str | None) -> None:
        spawner = None if server_name is None else self._spawner_of(user_name, server_name)
        before = getattr(spawner, "before_share", None)
        if before is None:
            await post(user_name, server_name)
            return
        try:
            try:
                refusal = await maybe_future(before())
            except Exception as e:
                self.log.error(
                    "Share of %s/%s refused: its tokens could not be withheld: %s",
                    user_name,
                    server_name,
                    e,
                )
                raise web.HTTPError(
                    503,
                    "Sharing is unavailable right now: this server's tokens could not be "
                    "withdrawn first (the cluster or the login provider did not answer). "
                    "Nothing was shared; try again later.",
                ) from e
            if refusal:
                self.log.warning("Share of %s/%s refused: %s", user_name, server_name, refusal)
                raise web.HTTPError(403, f"This server may not be shared: {refusal}.")
            await post(user_name, server_name)
        finally:
            after = getattr(spawner, "after_share", None)
            if after is not None:
                try:
                    await maybe_future(after())
                except Exception:
                    self.log.exception("After the share request for %s/%s", user_name, server_name)


class GuardedServerShareAPIHandler(_GuardedShare, ServerShareAPIHandler):
    """``POST /hub/api/shares/{owner}/{server}``: the spawner is asked first."""

    @needs_scope("shares")
    async def post(self, user_name: str, server_name: str | None = None) -> None:
        await self._guarded(super().post, user_name, server_name)


class GuardedServerShareCodeAPIHandler(_GuardedShare, ServerShareCodeAPIHandler):
    """``POST /hub/api/share-codes/{owner}/{server}``: the spawner is asked first."""

    @needs_scope("shares")
    async def post(self, user_name: str, server_name: str | None = None) -> None:
        await self._guarded(super().post, user_name, server_name)


def share_handlers() -> list[tuple[str, type]]:
    """The handlers to add to JupyterHub's (before its own: the first match wins)."""
    return [
        *((p, GuardedServerShareAPIHandler) for p in SHARE_PATHS),
        *((p, GuardedServerShareCodeAPIHandler) for p in SHARE_CODE_PATHS),
    ]
