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

Whatever the spawner, a running server about to be shared is then recorded as shared since
it started (:mod:`egi_notebooks.shared_servers`: no token reaches it until it restarts) and
the access tokens the hub's access-token endpoint handed it, and its owner's current one,
are revoked at the provider (``503`` when the provider does not confirm); the owner gets a
new access token once the request is over. A request that made no share forgets the record.
This module knows the spawner only through the two methods above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jupyterhub.apihandlers.shares import ServerShareAPIHandler, ServerShareCodeAPIHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import maybe_future
from tornado import web

from ..shared_servers import delivered, live_shares, mark, unmark

#: JupyterHub's URL patterns for the two handlers (under the hub's prefix), ours first
SHARE_PATHS = (r"/api/shares/([^/]+)", r"/api/shares/([^/]+)/([^/]*)")
SHARE_CODE_PATHS = (r"/api/share-codes/([^/]+)", r"/api/share-codes/([^/]+)/([^/]*)")


@dataclass
class _Pending:
    """The share requests of one server under way in this hub process."""

    requests: int = 0
    marked: bool = False  # one of them recorded the server as shared


_pending: dict[int, _Pending] = {}


class _GuardedShare:
    """Mixin: run the spawner's preparation between the scope check and the share."""

    # provided by JupyterHub's handler classes
    log: Any
    db: Any
    authenticator: Any
    find_user: Any

    def _spawner_of(self, user_name: str, server_name: str) -> Any:
        user = self.find_user(user_name)
        if user is None or server_name not in user.orm_spawners:
            return None  # JupyterHub's post answers 404
        return user.spawners[server_name]

    async def _guarded(self, post: Any, user_name: str, server_name: str | None) -> None:
        spawner = None if server_name is None else self._spawner_of(user_name, server_name)
        if spawner is None:
            await post(user_name, server_name)
            return
        orm_spawner = spawner.orm_spawner
        pending = _pending.setdefault(orm_spawner.id, _Pending())
        pending.requests += 1
        revoked: set[str] = set()  # asked to be revoked (confirmed or not)
        try:
            try:
                before = getattr(spawner, "before_share", None)
                refusal = None if before is None else await maybe_future(before())
                if not refusal:
                    pending.marked = mark(self.db, orm_spawner) or pending.marked
                    await self._revoke_delivered(spawner, revoked)
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
            pending.requests -= 1
            after = getattr(spawner, "after_share", None)
            try:
                if not pending.requests:
                    _pending.pop(orm_spawner.id, None)
                    self._settle_record(orm_spawner, pending.marked)
                if after is not None:
                    await maybe_future(after())
                await self._refresh_if_revoked(spawner.user, revoked)
            except Exception:
                self.log.exception("After the share request for %s/%s", user_name, server_name)

    def _settle_record(self, orm_spawner: Any, marked: bool) -> None:
        """The last request is over: a share exists (recorded), or none was made (what the
        requests recorded is forgotten)."""
        if orm_spawner.id in live_shares(self.db, [orm_spawner.id]):
            mark(self.db, orm_spawner)
        elif marked:
            unmark(self.db, orm_spawner)

    async def _revoke_delivered(self, spawner: Any, revoked: set[str]) -> None:
        """Revoke what the access-token endpoint handed the server and the owner's current
        access token (it may have been handed before a hub restart), adding them to
        ``revoked`` first; raise unless the provider confirmed all."""
        if spawner.orm_spawner.server is None:
            return  # a stopped server holds nothing; a start finds the share
        revoke = getattr(self.authenticator, "revoke_access_tokens", None)
        if revoke is None:
            return
        server_id = spawner.orm_spawner.id
        auth_state = await spawner.user.get_auth_state() or {}
        tokens = set(delivered.of(server_id))
        if isinstance(auth_state.get("access_token"), str) and auth_state["access_token"]:
            tokens.add(auth_state["access_token"])
        revoked.update(tokens)
        confirmed = await revoke(sorted(tokens)) if tokens else 0
        if confirmed < len(tokens):
            raise RuntimeError(f"the provider confirmed {confirmed} of {len(tokens)} revocations")
        delivered.forget(server_id, tokens)

    async def _refresh_if_revoked(self, user: Any, revoked: set[str]) -> None:
        """The owner's stored access token was revoked (and no one has refreshed it since):
        get a new one for the owner's other uses."""
        refresh = getattr(self.authenticator, "refresh_tokens", None)
        if not revoked or refresh is None:
            return
        auth_state = await user.get_auth_state() or {}
        if auth_state.get("access_token") in revoked and auth_state.get("refresh_token"):
            await refresh(user, force=True)


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
