"""What the end of a user's authorization does with their servers (in process), and how a
token's requester is recorded. The end to end behaviour on a real hub:
tests/e2e/test_authorization_loss_e2e.py and tests/e2e/test_admin_minted_token_e2e.py."""

from __future__ import annotations

import logging

import pytest
from traitlets.config import Configurable

from egi_notebooks.auth.token_requests import NOTE_MAX_LENGTH, marked_note, minted_by_another
from tests.unit.auth.helpers import make_authenticator


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


class Spawner:
    def __init__(self, active: bool, pending: str | None = None) -> None:
        self.active = active
        self.pending = pending


class User:
    def __init__(self, spawners: dict[str, Spawner]) -> None:
        self.name = "alice@egi.eu"
        self.spawners = spawners
        self.stopped: list[str] = []

    async def stop(self, name: str) -> None:
        self.stopped.append(name)
        self.spawners[name].active = False


class Proxy:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_user(self, user: User, name: str) -> None:
        self.deleted.append(name)


class App(Configurable):
    """The hub application, as the authenticator's parent."""

    def __init__(self) -> None:
        super().__init__()
        self.proxy = Proxy()


def authenticator(**traits):
    auth = make_authenticator(**traits)
    auth.parent = App()
    return auth


async def test_running_servers_stop_route_first_and_the_log_says_why(caplog):
    auth = authenticator()
    user = User({"": Spawner(True), "gpu": Spawner(True), "old": Spawner(False)})
    with caplog.at_level(logging.WARNING):
        await auth.on_authorization_lost(user, "no allowed VO or entitlement left")
    assert sorted(user.stopped) == ["", "gpu"]
    assert sorted(auth.parent.proxy.deleted) == ["", "gpu"]
    assert (
        "alice@egi.eu lost authorization (no allowed VO or entitlement left): hub API tokens"
        " revoked; stopping servers: (default), 'gpu'"
    ) in caplog.text


async def test_servers_may_be_left_running_by_the_operator(caplog):
    auth = authenticator(stop_servers_on_authorization_loss=False)
    user = User({"": Spawner(True)})
    with caplog.at_level(logging.WARNING):
        await auth.on_authorization_lost(user, "blocked")
    assert user.stopped == [] and auth.parent.proxy.deleted == []
    assert "leaving running servers: (default)" in caplog.text


async def test_a_stop_in_progress_is_left_to_finish():
    auth = authenticator()
    user = User({"": Spawner(True, pending="stop")})
    await auth.on_authorization_lost(user, "blocked")
    assert user.stopped == []


def test_the_requester_is_recorded_whatever_the_note():
    mark = "Requested via api by user admin@egi.eu"
    assert marked_note(None, mark) == mark
    assert marked_note("", mark) == mark
    assert marked_note("laptop", mark) == f"laptop; {mark}"
    assert marked_note(mark, mark) == mark
    long = marked_note("x" * 5000, mark)
    assert len(long) <= NOTE_MAX_LENGTH and long.endswith(f"; {mark}")
    assert minted_by_another(long) == mark
    assert minted_by_another("Requested via api by service test-admin") == (
        "Requested via api by service test-admin"
    )
    # the owner's own tokens: JupyterHub's default note, a note of theirs, a server's
    for note in ("Requested via api", "my laptop", "Server at /user/alice/", None):
        assert minted_by_another(note) is None
