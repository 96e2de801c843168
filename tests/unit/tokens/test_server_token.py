"""The hub-side check that a caller's token is the one the hub gave one of the user's servers,
on JupyterHub's own database model (the OAuth client of each server holds a hash of it)."""

from __future__ import annotations

import secrets

import pytest
from jupyterhub import orm
from jupyterhub.utils import hash_token

from egi_notebooks.auth.token_api import server_of_token


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    yield session
    session.close()


def add_server(db, user: orm.User, name: str, running: bool = True) -> str:
    token = secrets.token_hex(16)
    spawner = orm.Spawner(user=user, name=name)
    spawner.oauth_client = orm.OAuthClient(
        identifier=f"jupyterhub-user-{user.name}-{name}", secret=hash_token(token)
    )
    if running:
        spawner.server = orm.Server()
    db.add(spawner)
    db.commit()
    return token


def test_only_the_token_of_a_running_server_of_the_user(db):
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    db.add_all([alice, bob])
    db.commit()
    default = add_server(db, alice, "")
    named = add_server(db, alice, "lab")
    stopped = add_server(db, alice, "old", running=False)
    bobs = add_server(db, bob, "")
    assert server_of_token(alice, default) is alice.orm_spawners[""]
    assert server_of_token(alice, named) is alice.orm_spawners["lab"]
    assert server_of_token(alice, stopped) is None
    assert server_of_token(alice, bobs) is None
    assert server_of_token(alice, secrets.token_hex(16)) is None  # any other token of alice's
    assert server_of_token(alice, "") is None
