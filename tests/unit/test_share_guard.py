"""The share guard asks the server's spawner before JupyterHub's post makes the share, and,
whatever the spawner, records the server as shared since it started and revokes the access
tokens handed to it."""

from __future__ import annotations

import logging
import secrets
import types

import pytest
from jupyterhub import orm
from jupyterhub.utils import hash_token
from tornado import web

from egi_notebooks import shared_servers
from egi_notebooks.auth.share_guard import _GuardedShare


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    yield session
    session.close()


class User:
    def __init__(self):
        self.auth_state = {"access_token": "AT-current", "refresh_token": "RT"}

    async def get_auth_state(self):
        return self.auth_state


class Authenticator:
    def __init__(self, confirm=True):
        self.revoked: list[str] = []
        self.refreshed = 0
        self.confirm = confirm

    async def revoke_access_tokens(self, tokens):
        tokens = list(tokens)
        self.revoked += tokens
        return len(tokens) if self.confirm else 0

    async def refresh_tokens(self, user, force=False):
        assert force
        self.refreshed += 1
        user.auth_state = dict(user.auth_state, access_token=f"AT-new-{self.refreshed}")


class StockSpawner:
    """A spawner without the hooks (JupyterHub's local spawner, a stock KubeSpawner)."""

    def __init__(self, orm_spawner=None):
        self.orm_spawner = orm_spawner or types.SimpleNamespace(id=None, server=None)
        self.user = User()


class Spawner(StockSpawner):
    def __init__(self, refusal=None, error=None, sync=False):
        super().__init__()
        self.calls: list[str] = []
        self.refusal, self.error, self.sync = refusal, error, sync

    def before_share(self):
        self.calls.append("before")
        if self.error:
            raise self.error
        if self.sync:
            return self.refusal

        async def answer():
            return self.refusal

        return answer()

    async def after_share(self):
        self.calls.append("after")


class Handler(_GuardedShare):
    log = logging.getLogger("test")

    def __init__(self, spawner, db=None, authenticator=None, share=None):
        self.spawner = spawner
        self.posted: list[tuple] = []
        self.db = db
        self.authenticator = authenticator or Authenticator()
        self.share = share  # what JupyterHub's post does (None: nothing)

    def find_user(self, name):
        return types.SimpleNamespace(
            orm_spawners={"": object(), "big": object()},
            spawners={"": self.spawner, "big": self.spawner},
        )

    async def post(self, user_name, server_name):
        if isinstance(self.spawner, Spawner):
            self.spawner.calls.append("post")
        self.posted.append((user_name, server_name))
        if self.share is not None:
            self.share()


async def guarded(handler, server="big"):
    await handler._guarded(handler.post, "alice", server)


@pytest.mark.parametrize("sync", [False, True])
async def test_the_spawner_prepares_before_the_share_and_hears_after_it(sync):
    spawner = Spawner(sync=sync)
    handler = Handler(spawner)
    await guarded(handler)
    assert spawner.calls == ["before", "post", "after"]


async def test_a_refusal_is_403_with_the_reason_and_no_share():
    spawner = Spawner(refusal="servers of profile 'large' may not be shared")
    handler = Handler(spawner)
    with pytest.raises(web.HTTPError) as e:
        await guarded(handler)
    assert e.value.status_code == 403
    assert "servers of profile 'large' may not be shared" in e.value.log_message
    assert spawner.calls == ["before", "after"] and handler.posted == []


async def test_a_failed_preparation_is_503_and_no_share():
    spawner = Spawner(error=RuntimeError("the cluster did not answer"))
    handler = Handler(spawner)
    with pytest.raises(web.HTTPError) as e:
        await guarded(handler)
    assert e.value.status_code == 503
    assert "Nothing was shared" in e.value.log_message
    assert spawner.calls == ["before", "after"] and handler.posted == []


async def test_a_stopped_server_without_the_hooks_is_shared_untouched():
    handler = Handler(StockSpawner())
    await guarded(handler)
    assert handler.posted == [("alice", "big")] and handler.authenticator.revoked == []


@pytest.fixture
def running(db):
    """Alice's running server (its OAuth client holds a hash of its server token), bob."""
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    orm_spawner = orm.Spawner(user=alice, name="big", server=orm.Server())
    orm_spawner.oauth_client = orm.OAuthClient(
        identifier="jupyterhub-user-alice-big", secret=hash_token(secrets.token_hex(8))
    )
    db.add_all([alice, bob, orm_spawner])
    db.commit()
    return orm_spawner, bob


async def test_any_spawner_has_the_tokens_handed_to_it_revoked_and_stays_without(db, running):
    orm_spawner, bob = running
    shared_servers.delivered.add(orm_spawner.id, "AT-served-earlier", 4_000_000_000)
    spawner = StockSpawner(orm_spawner)
    handler = Handler(spawner, db, share=lambda: orm.Share.grant(db, orm_spawner, bob))
    await guarded(handler)
    # what the tokens service handed out, and the owner's current token; the owner gets
    # a new one
    assert sorted(handler.authenticator.revoked) == ["AT-current", "AT-served-earlier"]
    assert handler.authenticator.refreshed == 1
    assert shared_servers.delivered.of(orm_spawner.id) == []
    orm.Share.revoke(db, orm_spawner, bob)
    assert shared_servers.shared_since_start(db, orm_spawner)


async def test_a_share_not_made_or_not_revocable_leaves_no_record(db, running):
    orm_spawner, _ = running
    await guarded(Handler(StockSpawner(orm_spawner), db))  # JupyterHub made no share
    assert not shared_servers.shared_since_start(db, orm_spawner)
    handler = Handler(StockSpawner(orm_spawner), db, Authenticator(confirm=False))
    with pytest.raises(web.HTTPError) as e:
        await guarded(handler)
    assert e.value.status_code == 503 and handler.posted == []
    assert not shared_servers.shared_since_start(db, orm_spawner)
    # the owner's token may be dead all the same: the owner gets a new one
    assert handler.authenticator.refreshed == 1


async def test_an_unknown_server_or_none_goes_to_jupyterhub_unasked():
    spawner = Spawner()
    handler = Handler(spawner)
    await guarded(handler, "nope")
    await handler._guarded(handler.post, "alice", None)
    assert handler.posted == [("alice", "nope"), ("alice", None)] and spawner.calls == [
        "post",
        "post",
    ]
