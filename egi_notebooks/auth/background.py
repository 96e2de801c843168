"""Background refresh: keep every running server's access token fresh without user traffic.

Runs on the hub's event loop (started by the authenticator once the hub is up). It only
looks at users with at least one active server, refreshes each ahead of expiry through the
authenticator's single-flight refresh, with bounded concurrency across users. While the
provider is unavailable the authenticator's per-user backoff (``refresh_backoff``, shared with
requests and the access-token endpoint) decides when a user is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .refresh import needs_refresh, refresh_due_at
from .refresh_flow import apply_auth_model

if TYPE_CHECKING:
    from .authenticator import EGICheckinAuthenticator


class LoopTask:
    """A task of the hub's event loop that runs ``_run`` from ``start()`` until ``stop()``
    (the background refresh, the jwt_login checks)."""

    _task: asyncio.Task | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


class BackgroundRefresher(LoopTask):
    def __init__(
        self,
        authenticator: EGICheckinAuthenticator,
        app: Any,
        concurrency: int,
        max_sleep: float,
        max_backoff: float,
        log: logging.Logger,
    ) -> None:
        self.authenticator = authenticator
        self.app = app
        self.semaphore = asyncio.Semaphore(max(1, concurrency))
        self.max_sleep = max_sleep
        self.max_backoff = max_backoff
        self.log = log
        # user name -> epoch seconds of the next look (an upper bound: auth_state decides)
        self.next_check: dict[str, float] = {}
        self.refreshes = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look again now (a server started, a user logged in)."""
        self._wake.set()

    def users_with_servers(self) -> list[Any]:
        return [
            user
            for user in list(self.app.users.values())
            if any(s.active for s in user.spawners.values())
        ]

    async def _run(self) -> None:
        while True:
            try:
                sleep = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Background token refresh pass failed; retrying")
                sleep = self.max_sleep
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=sleep)
            except TimeoutError:
                pass

    async def tick(self, now: float | None = None) -> float:
        """One pass; returns how long to sleep before the next one."""
        now = time.time() if now is None else now
        users = self.users_with_servers()
        active = {u.name for u in users}
        for name in list(self.next_check):
            if name not in active:  # last server stopped (the backoff stays with the user)
                self.next_check.pop(name, None)
        due = [u for u in users if self.next_check.get(u.name, 0) <= now]
        await asyncio.gather(*(self._check(user) for user in due))
        upcoming = [t for name, t in self.next_check.items() if name in active]
        if not upcoming:
            return self.max_sleep
        return min(self.max_sleep, max(0.5, min(upcoming) - time.time()))

    async def _check(self, user: Any) -> None:
        async with self.semaphore:
            leeway = self.authenticator.refresh_leeway
            backoff = self.authenticator.refresh_backoff
            auth_state = await user.get_auth_state() or {}
            if not auth_state.get("refresh_token"):
                # logged out, authorization lost, or no offline_access: nothing to keep fresh
                self.next_check[user.name] = time.time() + self.max_sleep
                return
            if needs_refresh(auth_state, leeway):
                if backoff.waiting(user.name):
                    self.next_check[user.name] = time.time() + backoff.remaining(user.name)
                    return
                result = await self.authenticator.refresh_tokens(user)
                await self.apply(user, result)
                auth_state = await user.get_auth_state() or {}
                if auth_state.get("refresh_token") and needs_refresh(auth_state, leeway):
                    # failed (the authenticator logged it and backs off) or not allowed yet
                    wait = backoff.remaining(user.name) or self.max_sleep
                    self.next_check[user.name] = time.time() + wait
                    return
                self.refreshes += 1
            due = refresh_due_at(auth_state, leeway)
            self.next_check[user.name] = due if due is not None else time.time() + self.max_sleep

    async def apply(self, user: Any, result: Any) -> None:
        """Admin and group changes a background refresh found, as a request would apply them."""
        if isinstance(result, dict):
            apply_auth_model(user, result, self.authenticator.manage_groups)
