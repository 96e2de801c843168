"""Servers shared since they started: none of their owner's tokens reach them until a restart.

A guest of a shared server runs code as the owner's server: they may copy its API token
(``$JUPYTERHUB_API_TOKEN``) or leave a process running, and both outlive the share. So once
a share or a share code has existed for a running server, the server is not trusted again
until it restarts (a new process or pod, a new server API token): its token Secret stays
empty and the hub's access-token endpoint refuses its token.

The record is one row per server in the hub's database (table
``egi_notebooks_shared_servers``, created on first use), holding the server's OAuth client
secret when the share was seen: JupyterHub keeps there a salted hash of the server's API
token and replaces it at every start, so a restart clears the record by itself while a hub
restart keeps it. The authenticator package (the access-token endpoint, the share guard) and
the spawner package (the token Secret, the share watcher) both read it here; neither imports
the other.

This module also keeps, in memory, the access tokens the hub's access-token endpoint handed
to each server (the last few per server, until they expire), so that a share revokes them
whatever the spawner. They are never logged.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from jupyterhub import orm
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Unicode, delete, or_, select
from sqlalchemy import func as sql_func

TABLE_NAME = "egi_notebooks_shared_servers"

_metadata = MetaData()
shared_servers = Table(
    TABLE_NAME,
    _metadata,
    # no foreign key to JupyterHub's spawners table: its migrations may rebuild that table;
    # a row outliving its server is harmless (no later server has the same secret)
    Column("spawner_id", Integer, primary_key=True),
    Column("client_secret", Unicode(255), nullable=False),
    Column("since", DateTime, nullable=False, server_default=sql_func.now()),
)

_ready: weakref.WeakSet[Any] = weakref.WeakSet()  # engines whose table is known to exist


def _table(db: Any) -> Table:
    """The table, created in the hub's database the first time this process needs it."""
    bind = db.get_bind()
    if bind not in _ready:
        _metadata.create_all(db.connection(), checkfirst=True)
        db.commit()
        _ready.add(bind)
    return shared_servers


def live_shares(db: Any, spawner_ids: Iterable[int] | None = None) -> set[int]:
    """Ids of the ``orm.Spawner`` rows with a live share or share code (all, or among
    ``spawner_ids``). Reads columns only: the answer is the database's, never a stale
    object's."""
    wanted = None if spawner_ids is None else {i for i in spawner_ids if i is not None}
    if wanted is not None and not wanted:
        return set()
    found: set[int] = set()
    for cls in (orm.Share, orm.ShareCode):
        query = db.query(cls.spawner_id).filter(
            or_(cls.expires_at.is_(None), cls.expires_at >= cls.now())
        )
        if wanted is not None:
            query = query.filter(cls.spawner_id.in_(wanted))
        found.update(row[0] for row in query.distinct())
    return found


def current_secret(orm_spawner: Any) -> str | None:
    """The OAuth client secret of the server's running (or starting) instance, ``None`` when
    it is stopped: it changes at every start."""
    client = getattr(orm_spawner, "oauth_client", None)
    if orm_spawner is None or orm_spawner.server is None or client is None:
        return None
    return client.secret or None


def _recorded_secret(db: Any, spawner_id: int) -> str | None:
    table = _table(db)
    row = db.execute(select(table.c.client_secret).where(table.c.spawner_id == spawner_id)).first()
    return None if row is None else row[0]


def mark(db: Any, orm_spawner: Any) -> bool:
    """Record that the server's running instance has been shared: ``True`` when newly
    recorded (``False``: recorded already, or the server is not running)."""
    secret = current_secret(orm_spawner)
    if secret is None:
        return False
    if _recorded_secret(db, orm_spawner.id) == secret:
        return False
    table = _table(db)
    db.execute(delete(table).where(table.c.spawner_id == orm_spawner.id))
    db.execute(table.insert().values(spawner_id=orm_spawner.id, client_secret=secret))
    db.commit()
    return True


def unmark(db: Any, orm_spawner: Any) -> None:
    """Forget the record (a share request that made no share recorded it first)."""
    table = _table(db)
    db.execute(delete(table).where(table.c.spawner_id == orm_spawner.id))
    db.commit()


def marked(db: Any, orm_spawner: Any) -> bool:
    """Whether the server's running instance was recorded as shared."""
    secret = current_secret(orm_spawner)
    if secret is None:
        return False
    return _recorded_secret(db, orm_spawner.id) == secret


def shared_since_start(db: Any, orm_spawner: Any) -> bool:
    """Whether the server has a share or share code now, or had one since it started (a
    share seen now is recorded, so that it still counts once it has ended)."""
    if orm_spawner is None or orm_spawner.id is None:
        return False
    if orm_spawner.id in live_shares(db, [orm_spawner.id]):
        mark(db, orm_spawner)
        return True
    return marked(db, orm_spawner)


# ----- what the access-token endpoint handed to each server (in memory) ---------------------

#: access tokens kept per server (a server asks again after each refresh; older ones expire)
TOKENS_KEPT_PER_SERVER = 4
#: servers remembered (the least recently served forgotten first)
SERVERS_KEPT = 5000


class DeliveredTokens:
    """Bounded record of the access tokens handed to each server (by ``orm.Spawner`` id),
    with their expiry; expired ones are dropped. Its ``repr`` shows no token."""

    def __init__(
        self, per_server: int = TOKENS_KEPT_PER_SERVER, servers: int = SERVERS_KEPT
    ) -> None:
        self.per_server, self.servers = per_server, servers
        self._tokens: OrderedDict[int, dict[str, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<DeliveredTokens for {len(self._tokens)} servers>"

    def add(self, spawner_id: int, token: str, expires_at: float | None) -> None:
        kept = self._tokens.pop(spawner_id, {})
        kept.pop(token, None)
        kept[token] = float(expires_at) if expires_at else time.time() + 3600
        while len(kept) > self.per_server:
            kept.pop(next(iter(kept)))
        self._tokens[spawner_id] = kept
        while len(self._tokens) > self.servers:
            self._tokens.popitem(last=False)

    def of(self, spawner_id: int) -> list[str]:
        """The unexpired tokens handed to the server, oldest first."""
        now = time.time()
        kept = {t: exp for t, exp in self._tokens.get(spawner_id, {}).items() if exp > now}
        if kept:
            self._tokens[spawner_id] = kept
        else:
            self._tokens.pop(spawner_id, None)
        return list(kept)

    def forget(self, spawner_id: int, tokens: Iterable[str]) -> None:
        """Drop ``tokens`` (revoked) from the server's record."""
        kept = self._tokens.get(spawner_id)
        if kept is None:
            return
        for token in tokens:
            kept.pop(token, None)
        if not kept:
            self._tokens.pop(spawner_id, None)


#: the hub process's record (one hub per process)
delivered = DeliveredTokens()
