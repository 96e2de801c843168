"""Shares read from JupyterHub's own database model, the refusal rule, the watcher's
decisions (which spawner blocks or restores its tokens), and a shared server that stays
without tokens until it restarts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from jupyterhub import orm
from jupyterhub.utils import hash_token

from egi_notebooks import shared_servers
from egi_notebooks.shared_servers import live_shares
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
        start(db, spawner)
        db.commit()
        made[f"{user.name}/{name}"] = spawner
    return made, alice, bob


def start(db, orm_spawner) -> None:
    """What JupyterHub records at a (re)start: a server, an OAuth client whose secret is a
    hash of the new server API token."""
    orm_spawner.server = orm.Server()
    identifier = f"jupyterhub-user-{orm_spawner.user.name}-{orm_spawner.name}"
    client = db.query(orm.OAuthClient).filter_by(identifier=identifier).one_or_none()
    client = client or orm.OAuthClient(identifier=identifier)
    client.secret = hash_token(f"server-token-{id(client)}-{orm_spawner.id}")
    orm_spawner.oauth_client = client
    db.commit()


def test_a_share_or_a_live_share_code_makes_a_server_shared(db, servers):
    made, alice, bob = servers
    assert live_shares(db) == set()
    orm.Share.grant(db, made["alice/"], bob)
    code, _ = orm.ShareCode.new(db, made["alice/lab"], scopes=[], expires_in=3600)
    expired, _ = orm.ShareCode.new(db, made["alice/other"], scopes=[], expires_in=3600)
    expired.expires_at = orm.ShareCode.now() - timedelta(seconds=1)
    db.commit()
    assert live_shares(db) == {made["alice/"].id, made["alice/lab"].id}
    # restricted to some servers
    ids = [made["alice/lab"].id, made["bob/"].id]
    assert live_shares(db, ids) == {made["alice/lab"].id}
    assert live_shares(db, []) == set()
    # revoking the share (JupyterHub deletes the row) ends it
    orm.Share.revoke(db, made["alice/"], bob)
    assert live_shares(db) == {made["alice/lab"].id}
    assert code.id


def test_delete_shares_removes_shares_and_codes_of_one_server_only(db, servers):
    made, alice, bob = servers
    orm.Share.grant(db, made["alice/"], bob)
    orm.ShareCode.new(db, made["alice/"], scopes=[], expires_in=3600)
    orm.Share.grant(db, made["alice/lab"], bob)
    assert sharing.delete_shares(db, made["alice/"].id) == 2
    assert live_shares(db) == {made["alice/lab"].id}


def test_refusal_by_profile_or_primary_vo():
    refuse = sharing.sharing_refusal
    assert refuse("gpu", "vo.a", ["gpu"], []) == "servers of profile 'gpu' may not be shared"
    assert refuse("std", "vo.a", ["gpu"], ["vo.a"]) == "servers of VO 'vo.a' may not be shared"
    assert refuse("std", "vo.b", ["gpu"], ["vo.a"]) is None
    assert refuse(None, None, ["gpu"], ["vo.a"]) is None


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


# ----- EGISpawner's side, on the Kubernetes emulator --------------------------------------


class FakeAuthenticator:
    """What EGISpawner uses of EGICheckinAuthenticator when a share appears."""

    tokens_changed_hook = None
    client_id, client_secret, basic_auth = "hub", "secret", True

    def __init__(self, user_states: dict) -> None:
        self.states = user_states
        self.forced: list[str] = []

    async def revoke_access_tokens(self, tokens) -> int:
        return 0  # the revoked fixture (or a test) replaces it

    async def refresh_tokens(self, user, force: bool = False):
        from egi_notebooks.spawner.spawner import tokens_changed

        assert force
        self.forced.append(user.name)
        user.auth_state = dict(user.auth_state, access_token=f"AT-{len(self.forced) + 1}")
        await tokens_changed(self, user, user.auth_state)
        return True


def secret_files(cluster, name="egi-token-alice"):
    import base64

    secret = cluster.k8s.store[("secrets", "hub", name)]
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


@pytest.fixture
def revoked(monkeypatch):
    calls: list[str] = []

    async def revoke_access_tokens(authenticator, tokens) -> int:
        tokens = list(tokens)
        calls.extend(tokens)
        return len(tokens)

    monkeypatch.setattr(FakeAuthenticator, "revoke_access_tokens", revoke_access_tokens)
    return calls


async def alice_spawned(make_spawner, servers, **config):
    """Alice's default server spawned on the emulated cluster: (spawner, its authenticator,
    the ORM servers by "user/name", bob)."""
    from .conftest import spawn

    made, _, bob = servers
    authenticator = FakeAuthenticator({})
    spawner = make_spawner(authenticator=authenticator, **config)
    spawner.orm_spawner = made["alice/"]
    await spawn(spawner)
    return spawner, authenticator, made, bob


async def test_share_empties_the_secret_revokes_and_the_end_restores(
    cluster, make_spawner, db, servers, revoked
):
    from .conftest import ALICE_STATE

    spawner, authenticator, made, bob = await alice_spawned(make_spawner, servers)
    assert secret_files(cluster)["access_token"] == "AT-alice-1"
    from egi_notebooks.spawner.spawner import tokens_changed

    # a refresh before the share: the earlier token may still be live (and copied somewhere)
    spawner.user.auth_state = dict(ALICE_STATE, access_token="AT-alice-2")
    await tokens_changed(authenticator, spawner.user, spawner.user.auth_state)
    assert secret_files(cluster)["access_token"] == "AT-alice-2"

    orm.Share.grant(db, made["alice/"], bob)
    # a refresh before the watcher saw the share: nothing reaches the Secret
    spawner.user.auth_state = dict(ALICE_STATE, access_token="AT-refreshed")
    await tokens_changed(authenticator, spawner.user, spawner.user.auth_state)
    assert secret_files(cluster) == {"access_token": "", "id_token": ""}
    assert not spawner.sharing_blocked  # nothing revoked yet: the watcher does that

    await spawner.sharing_started()
    # the tokens the Secret held and the one the tokens service would have handed out
    assert sorted(revoked) == ["AT-alice-1", "AT-alice-2", "AT-refreshed"]
    assert authenticator.forced == ["alice"] and spawner.sharing_blocked
    assert secret_files(cluster) == {"access_token": "", "id_token": ""}
    await spawner.sharing_started()  # seen again at the next tick: no second revocation
    assert len(revoked) == 3 and live_shares(db) == {made["alice/"].id}

    # the share ends: the server stays without tokens (a guest may have copied its token or
    # left a process), whatever is refreshed, until it restarts
    orm.Share.revoke(db, made["alice/"], bob)
    await spawner.sharing_ended()
    spawner.user.auth_state = dict(ALICE_STATE, access_token="AT-after-the-share")
    await tokens_changed(authenticator, spawner.user, spawner.user.auth_state)
    assert secret_files(cluster) == {"access_token": "", "id_token": ""}
    assert spawner.sharing_blocked
    assert shared_servers.shared_since_start(db, made["alice/"])

    # a restart: a new server token (a new OAuth client secret), the tokens come back
    start(db, made["alice/"])
    assert not shared_servers.shared_since_start(db, made["alice/"])
    spawner.clear_state()
    await spawner.update_token_secret(spawner.user.auth_state)
    assert secret_files(cluster)["access_token"] == "AT-after-the-share"
    assert not spawner.sharing_blocked


async def test_a_refused_vo_loses_its_shares(cluster, make_spawner, db, servers, revoked):
    spawner, authenticator, made, bob = await alice_spawned(
        make_spawner, servers, sharing_refused_vos=["vo.example.org"]
    )
    orm.Share.grant(db, made["alice/"], bob)
    orm.ShareCode.new(db, made["alice/"], scopes=[], expires_in=3600)
    await spawner.sharing_started()
    assert revoked == ["AT-alice-1"]
    assert live_shares(db) == set()


# ----- before_share / after_share: what the share API asks before JupyterHub shares -------


async def test_before_share_withholds_and_revokes_before_the_share_exists(
    cluster, make_spawner, db, servers, revoked
):
    from .conftest import ALICE_STATE

    spawner, authenticator, made, bob = await alice_spawned(make_spawner, servers)
    assert await spawner.before_share() is None
    assert secret_files(cluster) == {"access_token": "", "id_token": ""}
    assert revoked == ["AT-alice-1"] and spawner.sharing_blocked
    # no refresh yet, and one that comes now (no share in the database yet) writes nothing
    assert authenticator.forced == []
    from egi_notebooks.spawner.spawner import tokens_changed

    spawner.user.auth_state = dict(ALICE_STATE, access_token="AT-meanwhile")
    await tokens_changed(authenticator, spawner.user, spawner.user.auth_state)
    assert secret_files(cluster) == {"access_token": "", "id_token": ""}
    await spawner.sharing_ended()  # the watcher, before the share exists: not now
    assert secret_files(cluster)["access_token"] == "" and spawner.sharing_blocked

    orm.Share.grant(db, made["alice/"], bob)
    await spawner.after_share()
    # the owner gets a new token, which the shared server does not
    assert authenticator.forced == ["alice"]
    assert secret_files(cluster) == {"access_token": "", "id_token": ""}
    await spawner.sharing_started()  # the watcher's next check: nothing more to revoke
    assert revoked == ["AT-alice-1"]


async def test_a_share_that_was_not_made_gives_the_tokens_back(
    cluster, make_spawner, db, servers, revoked
):
    spawner, authenticator, made, bob = await alice_spawned(make_spawner, servers)
    assert await spawner.before_share() is None
    await spawner.after_share()  # JupyterHub refused the share (say, no such guest)
    assert not spawner.sharing_blocked
    assert secret_files(cluster)["access_token"] == spawner.user.auth_state["access_token"]
    assert spawner.user.auth_state["access_token"] not in revoked


async def test_before_share_refuses_a_forbidden_profile_and_touches_nothing(
    cluster, make_spawner, db, servers, revoked
):
    spawner, authenticator, made, bob = await alice_spawned(
        make_spawner, servers, sharing_refused_vos=["vo.example.org"]
    )
    assert await spawner.before_share() == "servers of VO 'vo.example.org' may not be shared"
    await spawner.after_share()
    assert revoked == [] and secret_files(cluster)["access_token"] == "AT-alice-1"


async def test_before_share_fails_when_the_provider_does_not_revoke(
    cluster, make_spawner, db, servers, monkeypatch
):
    async def refused(authenticator, tokens) -> int:
        return 0

    monkeypatch.setattr(FakeAuthenticator, "revoke_access_tokens", refused)
    spawner, authenticator, made, bob = await alice_spawned(make_spawner, servers)
    with pytest.raises(RuntimeError, match="confirmed 0 of 1"):
        await spawner.before_share()
    await spawner.after_share()
    # no share was made: the file is filled again (the watcher will try again if one is)
    assert not spawner.sharing_blocked
    assert secret_files(cluster)["access_token"] == spawner.user.auth_state["access_token"]
