"""EGISpawner registers the authenticator's tokens_changed_hook; the authenticator then
writes refreshed tokens to the Secret, and empties it when the tokens are removed."""

from __future__ import annotations

import base64

import pytest
from traitlets.config import Config

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.auth.logout import strip_tokens
from egi_notebooks.spawner.spawner import tokens_changed

from .conftest import ALICE_STATE, spawn


@pytest.fixture
def authenticator(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    config = Config()
    # never contacted here: the hook is called directly, as a refresh does
    config.EGICheckinAuthenticator.oidc_issuer = "https://issuer.invalid/realm"
    config.EGICheckinAuthenticator.client_id = "hub"
    config.EGICheckinAuthenticator.client_secret = "client-secret"
    return EGICheckinAuthenticator(config=config)


def secret_data(cluster, name="egi-token-alice"):
    secret = cluster.k8s.store[("secrets", "hub", name)]
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


async def test_spawner_registers_the_hook_and_refreshed_tokens_reach_the_secret(
    cluster, make_spawner, authenticator
):
    assert authenticator.tokens_changed_hook is None
    spawner = make_spawner(authenticator=authenticator)
    assert authenticator.tokens_changed_hook is tokens_changed
    await spawn(spawner)
    assert secret_data(cluster)["access_token"] == "AT-alice-1"

    refreshed = dict(ALICE_STATE, access_token="AT-alice-2", id_token="IDT-alice-2")
    await authenticator.on_tokens_refreshed(spawner.user, refreshed)
    assert secret_data(cluster) == {"access_token": "AT-alice-2", "id_token": "IDT-alice-2"}

    # a logout or lost authorization removes the tokens: the Secret is emptied, not left
    await authenticator.on_tokens_refreshed(spawner.user, strip_tokens(refreshed))
    assert "access_token" not in secret_data(cluster)


async def test_an_operators_hook_is_kept_and_its_errors_do_not_escape(
    cluster, make_spawner, authenticator
):
    calls = []

    async def operators_hook(auth, user, auth_state):
        calls.append((auth, user.name, auth_state["access_token"]))
        raise RuntimeError("operator's bug")

    authenticator.tokens_changed_hook = operators_hook
    spawner = make_spawner(authenticator=authenticator)
    assert authenticator.tokens_changed_hook is operators_hook
    await authenticator.on_tokens_refreshed(spawner.user, dict(ALICE_STATE))
    assert calls == [(authenticator, "alice", "AT-alice-1")]


async def test_a_hub_without_egispawner_has_no_hook(authenticator):
    class User:
        name = "alice"
        spawners: dict = {}

    await authenticator.on_tokens_refreshed(User(), dict(ALICE_STATE))  # nothing to call
    assert authenticator.tokens_changed_hook is None
