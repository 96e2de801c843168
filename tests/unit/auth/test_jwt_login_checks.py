""":class:`JWTLoginChecker` without a hub: which jwt_login hub tokens a pass ends, given what
the provider's introspection says about their access tokens. End to end (a real hub, the
certified provider revoking the token) in tests/e2e/test_jwt_login_e2e.py."""

from __future__ import annotations

import copy
import logging
import time
from types import SimpleNamespace

import pytest
from tornado import web

from egi_notebooks.auth import jwt_login
from egi_notebooks.auth.jwt_login import (
    BEARERS_KEY,
    TOKEN_NOTE_PREFIX,
    BearerError,
    JWTLoginChecker,
    NotIntrospectable,
    token_fingerprint,
)
from egi_notebooks.auth.refresh import SingleFlight


class FakeDB:
    def __init__(self) -> None:
        self.deleted: list = []
        self.commits = 0

    def delete(self, row) -> None:
        self.deleted.append(row)

    def commit(self) -> None:
        self.commits += 1


class FakeUser:
    def __init__(self, auth_state: dict) -> None:
        self.name = "alice@egi.eu"
        self.auth_state = auth_state
        self.db = FakeDB()

    async def get_auth_state(self) -> dict:
        return copy.deepcopy(self.auth_state)

    async def save_auth_state(self, state: dict) -> None:
        self.auth_state = copy.deepcopy(state)


def entry(token: str, introspect: bool = True) -> dict:
    return {"token": token, "expires_at": time.time() + 600, "introspect": introspect}


def hub_token(access_token: str) -> SimpleNamespace:
    return SimpleNamespace(note=TOKEN_NOTE_PREFIX + token_fingerprint(access_token))


@pytest.fixture
def provider(monkeypatch):
    """What introspection says per access token: "active", "inactive", "down", "jwt"."""
    answers: dict[str, str] = {}
    asked: list[str] = []

    async def introspect(authenticator, access_token, log):
        asked.append(access_token)
        answer = answers[access_token]
        if answer == "inactive":
            raise BearerError("The access token is not active (expired or revoked).")
        if answer == "down":
            raise web.HTTPError(503)
        if answer == "jwt":
            raise NotIntrospectable()
        return {"active": True}

    monkeypatch.setattr(jwt_login, "introspect_token", introspect)
    return SimpleNamespace(answers=answers, asked=asked)


def checker() -> JWTLoginChecker:
    authenticator = SimpleNamespace(_single_flight=SingleFlight())
    return JWTLoginChecker(authenticator, app=None, interval=1, log=logging.getLogger("test"))


async def test_a_pass_ends_what_the_provider_no_longer_holds_active(provider):
    provider.answers.update(live="active", revoked="inactive", down="down", jwt="jwt")
    bearers = {token_fingerprint(t): entry(t) for t in ("live", "revoked", "down", "jwt")}
    bearers[token_fingerprint("signed")] = entry("signed", introspect=False)
    user = FakeUser({"access_token": "hub's own", BEARERS_KEY: bearers})
    tokens = {name: hub_token(name) for name in ("live", "revoked", "down", "jwt", "signed")}
    tokens["no record"] = hub_token("no record")
    await checker().check_user(user, list(tokens.values()))
    # revoked at the provider, or nothing to check it by: ended
    assert user.db.deleted == [tokens["revoked"], tokens["no record"]]
    assert user.db.commits == 1
    # the revoked access token is forgotten; the rest of auth_state stays
    kept = user.auth_state[BEARERS_KEY]
    assert token_fingerprint("revoked") not in kept and len(kept) == 4
    assert user.auth_state["access_token"] == "hub's own"
    # a JWT found not introspectable at login is not asked about
    assert "signed" not in provider.asked


async def test_a_pass_with_nothing_to_end_writes_nothing(provider):
    provider.answers.update(live="active")
    user = FakeUser({BEARERS_KEY: {token_fingerprint("live"): entry("live")}})
    before = copy.deepcopy(user.auth_state)
    await checker().check_user(user, [hub_token("live")])
    assert user.db.deleted == [] and user.db.commits == 0
    assert user.auth_state == before


async def test_an_expired_record_counts_as_none(provider):
    stale = {"token": "old", "expires_at": time.time() - 1, "introspect": True}
    user = FakeUser({BEARERS_KEY: {token_fingerprint("old"): stale}})
    old = hub_token("old")
    await checker().check_user(user, [old])
    assert user.db.deleted == [old]
    assert provider.asked == []
