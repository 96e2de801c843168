"""Shares read from JupyterHub's own database model, the refusal rule, and the watcher's
decisions (which spawner blocks or restores its tokens)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from jupyterhub import orm

from egi_notebooks.services.tokens.policy import servers_named
from egi_notebooks.spawner import sharing


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    yield session
    session.close()


@pytest.fixture
def servers(db):
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    db.add_all([alice, bob])
    db.commit()
    made = {}
    for user, name in ((alice, ""), (alice, "lab"), (alice, "other"), (bob, "")):
        spawner = orm.Spawner(user=user, name=name)
        db.add(spawner)
        db.commit()
        made[f"{user.name}/{name}"] = spawner
    return made, alice, bob


def test_a_share_or_a_live_share_code_makes_a_server_shared(db, servers):
    made, alice, bob = servers
    assert sharing.shared_spawner_ids(db) == set()
    orm.Share.grant(db, made["alice/"], bob)
    code, _ = orm.ShareCode.new(db, made["alice/lab"], scopes=[], expires_in=3600)
    expired, _ = orm.ShareCode.new(db, made["alice/other"], scopes=[], expires_in=3600)
    expired.expires_at = orm.ShareCode.now() - timedelta(seconds=1)
    db.commit()
    assert sharing.shared_spawner_ids(db) == {made["alice/"].id, made["alice/lab"].id}
    # restricted to some servers
    ids = [made["alice/lab"].id, made["bob/"].id]
    assert sharing.shared_spawner_ids(db, ids) == {made["alice/lab"].id}
    assert sharing.shared_spawner_ids(db, []) == set()
    # revoking the share (JupyterHub deletes the row) ends it
    orm.Share.revoke(db, made["alice/"], bob)
    assert sharing.shared_spawner_ids(db) == {made["alice/lab"].id}
    assert code.id


def test_delete_shares_removes_shares_and_codes_of_one_server_only(db, servers):
    made, alice, bob = servers
    orm.Share.grant(db, made["alice/"], bob)
    orm.ShareCode.new(db, made["alice/"], scopes=[], expires_in=3600)
    orm.Share.grant(db, made["alice/lab"], bob)
    assert sharing.delete_shares(db, made["alice/"].id) == 2
    assert sharing.shared_spawner_ids(db) == {made["alice/lab"].id}


def test_refusal_by_profile_or_primary_vo():
    refuse = sharing.sharing_refusal
    assert refuse("gpu", "vo.a", ["gpu"], []) == "servers of profile 'gpu' may not be shared"
    assert refuse("std", "vo.a", ["gpu"], ["vo.a"]) == "servers of VO 'vo.a' may not be shared"
    assert refuse("std", "vo.b", ["gpu"], ["vo.a"]) is None
    assert refuse(None, None, ["gpu"], ["vo.a"]) is None


def test_servers_named_by_a_tokens_scopes():
    identity = {
        "scopes": [
            "access:servers!server=alice/",
            "access:servers!server=alice/lab",
            "access:servers!server=bob/",
            "users:activity!user=alice",
        ]
    }
    assert servers_named(identity, "alice") == ["", "lab"]
    assert servers_named({"scopes": None}, "alice") == []


class FakeSpawner:
    def __init__(self, db, orm_spawner, blocked=False, active=True):
        self.db, self.orm_spawner = db, orm_spawner
        self.sharing_blocked, self.active, self.has_pod = blocked, active, False
        self.calls: list[str] = []
        self._log_name = orm_spawner.name
        self.log = sharing.log

    async def sharing_started(self):
        self.calls.append("started")
        self.sharing_blocked = True

    async def sharing_ended(self):
        self.calls.append("ended")
        self.sharing_blocked = False


def test_the_watcher_blocks_newly_shared_and_restores_unshared_servers(db, servers):
    made, alice, bob = servers
    shared = FakeSpawner(db, made["alice/"])
    was_shared = FakeSpawner(db, made["alice/lab"], blocked=True)
    untouched = FakeSpawner(db, made["bob/"])
    stopped = FakeSpawner(db, made["alice/other"], active=False)
    orm.Share.grant(db, made["alice/"], bob)
    orm.Share.grant(db, made["alice/other"], bob)
    watcher = sharing.ShareWatcher(interval=1)
    for s in (shared, was_shared, untouched, stopped):
        watcher.spawners.add(s)
    asyncio.run(watcher.tick())
    # a shared server is told at each tick (it deletes refused shares), acts once itself
    assert shared.calls == ["started"] and was_shared.calls == ["ended"]
    assert untouched.calls == [] and stopped.calls == []
    asyncio.run(watcher.tick())
    assert shared.calls == ["started", "started"] and was_shared.calls == ["ended"]


def test_one_failing_spawner_does_not_stop_the_others(db, servers):
    made, alice, bob = servers

    class Broken(FakeSpawner):
        async def sharing_started(self):
            raise RuntimeError("Kubernetes down")

    broken, fine = Broken(db, made["alice/"]), FakeSpawner(db, made["alice/lab"])
    orm.Share.grant(db, made["alice/"], bob)
    orm.Share.grant(db, made["alice/lab"], bob)
    watcher = sharing.ShareWatcher(interval=1)
    watcher.spawners.add(broken)
    watcher.spawners.add(fine)
    asyncio.run(watcher.tick())
    assert fine.calls == ["started"]
