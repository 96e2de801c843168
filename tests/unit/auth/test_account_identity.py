"""Each hub account is bound to the provider identity (``sub``) it was created or migrated
with: a login of another identity under its name is refused, whatever path it takes (the
browser login and jwt_login both call ``check_account``), and a refresh cannot change it."""

from __future__ import annotations

import logging

import pytest
from tornado import web

from egi_notebooks.identity import IDENTITY_KEY, LEGACY_NAMES_KEY
from tests.unit.auth.helpers import make_authenticator as make

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


async def login_state(authenticator, sub: str) -> dict:
    auth_model = {
        "name": "bob@egi.eu",
        "admin": None,
        "auth_state": {"oauth_user": {"sub": sub, "eduperson_entitlement": [ACCESS]}},
    }
    return (await authenticator.update_auth_model(auth_model))["auth_state"]


async def test_a_login_of_another_identity_is_refused_with_a_clear_message(caplog):
    authenticator = make()
    # mallory's 1.0 account 'bob@egi.eu': bound through the claims it last logged in with
    stored = {"oauth_user": {"sub": "mallory-sub"}, "access_token": "AT-MALLORY-SECRET"}
    bob = await login_state(authenticator, "bob-sub")
    assert bob[IDENTITY_KEY] == "sub:bob-sub"
    with caplog.at_level(logging.WARNING), pytest.raises(web.HTTPError) as refused:
        authenticator.check_account("bob@egi.eu", stored, bob)
    assert refused.value.status_code == 403
    assert "belongs to another" in refused.value.log_message
    assert "Login of 'bob@egi.eu' refused" in caplog.text
    assert "SECRET" not in caplog.text and "mallory-sub" not in caplog.text
    # recorded identities count the same way
    with pytest.raises(web.HTTPError):
        authenticator.check_account("bob@egi.eu", {IDENTITY_KEY: "sub:mallory-sub"}, bob)


async def test_the_bound_identity_logs_in_and_keeps_its_migration_record():
    authenticator = make()
    record = {"identity": "sub:bob-sub", "names": ["bobby"]}
    stored = {IDENTITY_KEY: "sub:bob-sub", LEGACY_NAMES_KEY: record}
    bob = await login_state(authenticator, "bob-sub")
    authenticator.check_account("bob@egi.eu", stored, bob)
    assert bob[LEGACY_NAMES_KEY] == record
    # an account nobody logged in to yet (created by an admin) is bound by its first login
    fresh = await login_state(authenticator, "bob-sub")
    authenticator.check_account("bob@egi.eu", None, fresh)
    assert LEGACY_NAMES_KEY not in fresh


async def test_a_record_made_for_another_identity_is_not_carried_over():
    authenticator = make()
    stored = {"oauth_user": {"sub": "bob-sub"}, LEGACY_NAMES_KEY: {"identity": "sub:x"}}
    bob = await login_state(authenticator, "bob-sub")
    authenticator.check_account("bob@egi.eu", stored, bob)
    assert LEGACY_NAMES_KEY not in bob


async def test_a_refresh_about_another_identity_ends_the_session():
    authenticator = make()
    auth_model = {
        "name": "bob@egi.eu",
        "admin": None,
        "auth_state": {IDENTITY_KEY: "sub:bob-sub", "oauth_user": {"sub": "other"}},
    }
    refreshed = await authenticator.update_auth_model(auth_model)
    assert "another sub" in refreshed["refused"]


async def test_a_configured_identity_claim_binds_instead_of_sub():
    authenticator = make(identity_claim="voperson_id")
    auth_model = {
        "name": "bob@egi.eu",
        "admin": None,
        "auth_state": {"oauth_user": {"sub": "s", "voperson_id": "bob@egi.eu"}},
    }
    state = (await authenticator.update_auth_model(auth_model))["auth_state"]
    assert state[IDENTITY_KEY] == "voperson_id:bob@egi.eu"
    with pytest.raises(web.HTTPError):
        authenticator.check_account(
            "bob@egi.eu", {"oauth_user": {"voperson_id": "mallory@egi.eu"}}, state
        )
