"""A server shared since it started stays recorded as such until it restarts (a new server
token), across hub restarts; the record of tokens handed to servers is bounded and shows no
token; the tokens service relays the hub's refusal of a shared server with what to do."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from jupyterhub import orm
from jupyterhub.utils import hash_token
from tornado import web

from egi_notebooks import shared_servers
from egi_notebooks.auth.token_api import SERVER_WAS_SHARED
from egi_notebooks.services.tokens.app import TokensApp
from egi_notebooks.services.tokens.policy import SERVER_SHARED, SERVER_TOKEN_REQUIRED


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"


@pytest.fixture
def db(db_url):
    session = orm.new_session_factory(db_url)()
    yield session
    session.close()


def start(db, orm_spawner: orm.Spawner) -> None:
    """A (re)start as JupyterHub records it: a new server token, hashed into the OAuth
    client's secret."""
    orm_spawner.server = orm.Server()
    if orm_spawner.oauth_client is None:
        orm_spawner.oauth_client = orm.OAuthClient(identifier=f"client-{orm_spawner.name}")
    orm_spawner.oauth_client.secret = hash_token(secrets.token_hex(16))
    db.commit()


def stop(db, orm_spawner: orm.Spawner) -> None:
    db.delete(orm_spawner.server)
    db.delete(orm_spawner.oauth_client)
    db.commit()


@pytest.fixture
def alice_server(db):
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    db.add_all([alice, bob])
    spawner = orm.Spawner(user=alice, name="")
    db.add(spawner)
    db.commit()
    start(db, spawner)
    return spawner, bob


def test_shared_until_the_server_restarts(db, alice_server):
    spawner, bob = alice_server
    assert not shared_servers.shared_since_start(db, spawner)
    orm.Share.grant(db, spawner, bob)
    assert shared_servers.shared_since_start(db, spawner)
    orm.Share.revoke(db, spawner, bob)
    # the share is gone; the server is not trusted again
    assert shared_servers.shared_since_start(db, spawner)
    start(db, spawner)  # restarted: a new server token
    assert not shared_servers.shared_since_start(db, spawner)


def test_a_share_code_counts_and_a_stopped_server_is_not_recorded(db, alice_server):
    spawner, _ = alice_server
    orm.ShareCode.new(db, spawner, scopes=[], expires_in=3600)
    assert shared_servers.shared_since_start(db, spawner)
    for code in db.query(orm.ShareCode):
        db.delete(code)
    db.commit()
    stop(db, spawner)
    assert not shared_servers.shared_since_start(db, spawner)
    assert shared_servers.mark(db, spawner) is False  # nothing to record for a stopped server
    start(db, spawner)
    assert not shared_servers.shared_since_start(db, spawner)


def test_the_record_survives_a_hub_restart_and_can_be_forgotten(db_url, db, alice_server):
    spawner, bob = alice_server
    assert shared_servers.mark(db, spawner) is True
    assert shared_servers.mark(db, spawner) is False  # recorded already
    # a new hub process: a new session on the same database
    fresh = orm.new_session_factory(db_url)()
    try:
        again = fresh.get(orm.Spawner, spawner.id)
        assert shared_servers.shared_since_start(fresh, again)
        shared_servers.unmark(fresh, again)  # a share request that made no share
        assert not shared_servers.shared_since_start(fresh, again)
    finally:
        fresh.close()


def test_the_delivered_tokens_are_bounded_expire_and_never_shown():
    record = shared_servers.DeliveredTokens(per_server=2, servers=2)
    far = 4_000_000_000
    record.add(1, "AT-1", far)
    record.add(1, "AT-2", far)
    record.add(1, "AT-3", far)
    assert record.of(1) == ["AT-2", "AT-3"]
    record.add(1, "AT-old", 1)  # expired
    assert record.of(1) == ["AT-3"]
    record.add(2, "AT-b", far)
    record.add(3, "AT-c", far)  # the least recently served server is forgotten
    assert record.of(1) == [] and record.of(3) == ["AT-c"]
    record.forget(3, ["AT-c"])
    assert record.of(3) == []
    assert "AT-" not in repr(record) and "AT-" not in str(record)


class FakeHub:
    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer

    async def request(self, method: str, path: str, **kw) -> httpx.Response:
        return self.answer


def fetched(answer: httpx.Response) -> tuple[int | None, str]:
    app = TokensApp()
    app.initialize([])
    app.hub = FakeHub(answer)
    try:
        asyncio.run(app.access_token_of("alice@egi.eu", "server-token", True))
    except web.HTTPError as e:
        return e.status_code, e.log_message
    return None, ""


def test_the_tokens_service_says_a_shared_server_needs_a_restart():
    status, message = fetched(httpx.Response(403, json={"message": SERVER_WAS_SHARED}))
    assert (status, message) == (403, SERVER_SHARED)
    assert "restart it to get tokens again" in message
    not_a_server = {"message": "The caller's token is not one of the user's servers"}
    assert fetched(httpx.Response(403, json=not_a_server)) == (403, SERVER_TOKEN_REQUIRED)
    assert fetched(httpx.Response(403, json={"message": "Requires scope x"}))[0] == 503
