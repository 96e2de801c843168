"""Shared servers get none of their owner's tokens, until they restart.

JupyterHub's sharing (``POST /hub/api/shares/{owner}/{server}``, share codes) lets other
users into a server: its terminals and kernels run as the owner's pod, so everything the pod
holds is theirs to read, and what they copy or leave running outlives the share. Once a
server has had a live Share or ShareCode since it started, its token Secret holds no token
until it restarts (a new pod, a new server API token: see :mod:`egi_notebooks.shared_servers`,
which records it in the hub database), and the access tokens delivered before the share are
revoked at the provider. JupyterHub has no hook when a share is made: the share API requests
go through ``egi_notebooks.auth.share_guard``, which has the spawner withhold its tokens
before JupyterHub makes the share, and the shares made otherwise are seen by a
:class:`ShareWatcher` in the hub process that reads the hub database every
``EGISpawner.share_check_interval`` seconds; every write of a token Secret (spawn, refresh)
checks the database at that moment, so a share never receives a token written after it was
seen. The hub's access-token endpoint (behind the tokens service) refuses such a server's
token too.

This module holds the database reads and the watcher; the spawner decides what to write.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import Any

from jupyterhub import orm
from sqlalchemy.orm import object_session

from ..shared_servers import live_shares

log = logging.getLogger(__name__)


def session_of(spawner: Any) -> Any:
    """The hub's database session that the spawner's ``orm_spawner`` belongs to (``None``
    outside a hub). ``Spawner.db`` is the same session, deprecated in JupyterHub 6."""
    orm_spawner = getattr(spawner, "orm_spawner", None)
    return object_session(orm_spawner) if isinstance(orm_spawner, orm.Spawner) else None


def delete_shares(db: Any, spawner_id: int) -> int:
    """Delete every share and share code of one server; the number deleted."""
    deleted = 0
    for cls in (orm.Share, orm.ShareCode):
        deleted += db.query(cls).filter(cls.spawner_id == spawner_id).delete()
    db.commit()
    return deleted


def sharing_refusal(
    profile: str | None,
    primary_vo: str | None,
    refused_profiles: Iterable[str],
    refused_vos: Iterable[str],
) -> str | None:
    """Why a server of this profile and primary VO may not be shared (``None``: it may)."""
    if profile and profile in set(refused_profiles):
        return f"servers of profile {profile!r} may not be shared"
    if primary_vo and primary_vo in set(refused_vos):
        return f"servers of VO {primary_vo!r} may not be shared"
    return None


class ShareWatcher:
    """One per hub process: every ``interval`` seconds, compare the servers with shares to
    what each live spawner last acted on, and have the spawner block (share appeared) or
    look again (last share gone: the tokens stay withheld until the server restarts, unless
    the share request that blocked them made no share)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.spawners: weakref.WeakSet[Any] = weakref.WeakSet()
        self.task: asyncio.Task | None = None
        self.ticks = 0

    def add(self, spawner: Any) -> None:
        self.spawners.add(spawner)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on the hub's loop yet: the next spawner created on it starts us
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self.run())

    def live(self) -> list[Any]:
        return [
            s
            for s in list(self.spawners)
            if getattr(s, "orm_spawner", None) is not None and (s.active or s.has_pod)
        ]

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Checking shared servers failed; trying again")
            await asyncio.sleep(max(0.1, self.interval))

    async def tick(self) -> None:
        spawners = [s for s in self.live() if session_of(s) is not None]
        self.ticks += 1
        if not spawners:
            return
        db = session_of(spawners[0])
        shared = live_shares(db, [s.orm_spawner.id for s in spawners])
        for spawner in spawners:
            try:
                if spawner.orm_spawner.id in shared:
                    await spawner.sharing_started()
                elif spawner.sharing_blocked:
                    await spawner.sharing_ended()
            except Exception:
                spawner.log.exception("Could not apply the sharing state of %s", spawner._log_name)


_watcher: ShareWatcher | None = None


def watch(spawner: Any, interval: float) -> ShareWatcher:
    """Have the process's watcher (started on first use) look after ``spawner``."""
    global _watcher
    if _watcher is None:
        _watcher = ShareWatcher(interval)
    _watcher.add(spawner)
    return _watcher
