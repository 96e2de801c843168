"""A share made through JupyterHub's API withholds the server's tokens before it exists.

Real hub + CHP, the certified provider (as EGI Check-in, with introspection), EGISpawner on
the Kubernetes emulator (the token Secret materialised as the file the notebook reads).
The watcher's interval is set to ten minutes (an operator's setting): what is checked right
after the share request cannot have come from the watcher.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_sharing_e2e import (
    ALICE,
    BOB,
    LIFETIME,
    SPAWN_SECONDS,
    alice_delivering_tokens,
    as_user,
    assert_refused_until_restart,
    read,
    restarted,
    sharing_config,
    started,
    stop,
    tokens_service,
    wait_for_tokens_service,
    wait_until,
)
from tests.e2e.test_spawner_e2e import notebook_environ, spawner_hub, user_token
from tests.e2e.test_tokens_e2e import server_token
from tests.harness.hub import LOCAL_SPAWNER_CONFIG, free_port
from tests.harness.login import login

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

SLOW_WATCHER = "c.EGISpawner.share_check_interval = 600\n"


def login_both(egi) -> bool:
    return login(egi.hub.url, "alice").ok and login(egi.hub.url, "bob").ok


@pytest.fixture
def egi(tmp_path):
    extra = sharing_config(free_port()) + SLOW_WATCHER
    extra += 'c.EGISpawner.sharing_refused_profiles = ["large"]\n'
    with spawner_hub(tmp_path, extra) as hub:
        hub.service_url = f"{hub.hub.url}/services/tokens/token"
        yield hub


def test_the_share_request_returns_with_the_file_empty_and_the_tokens_revoked(egi):
    token_file, server_api_token, alice, delivered, expiry = alice_delivering_tokens(egi)
    assert all(egi.provider.introspect(t)["active"] for t in delivered)

    share = as_user(egi, alice, "POST", f"/shares/{ALICE}/", json={"user": BOB})
    assert share.status_code == 200, share.text
    # at once, without waiting for anything
    assert read(token_file) == ""
    assert read(token_file.parent / "id_token") == ""
    assert not any(egi.provider.introspect(t)["active"] for t in delivered)
    assert all(time.time() < exp for exp in expiry.values()), "expired, not revoked"
    assert tokens_service(egi, server_api_token).status_code == 403

    # the owner gets a new token, which does not reach the shared server
    current = wait_until(
        lambda: (t := egi.auth_state(ALICE)["access_token"]) not in delivered and t,
        60,
        "a new access token for alice after the revocation",
    )
    assert egi.provider.introspect(current)["active"] is True
    assert read(token_file) == ""

    # a share code: the same, on the server restarted once the share has ended (until then
    # it gets no token: it was shared)
    ended = as_user(egi, alice, "DELETE", f"/shares/{ALICE}/")
    assert ended.status_code == 204, ended.text
    token_file, server_api_token = restarted(egi, ALICE)
    restored = read(token_file)
    code = as_user(egi, alice, "POST", f"/share-codes/{ALICE}/", json={})
    assert code.status_code == 200, code.text
    assert read(token_file) == ""
    assert egi.provider.introspect(restored)["active"] is False


def test_a_server_whose_profile_may_not_be_shared_is_not_shared(egi):
    egi.provider.settings(access_token_lifetime=LIFETIME)
    assert login_both(egi)
    r = egi.hub.api("POST", f"/users/{ALICE}/servers/big", json={"profile": "large"})
    assert r.status_code in (201, 202), r.text
    egi.hub.wait_for_server(ALICE, "big", timeout=SPAWN_SECONDS)
    token_file = Path(notebook_environ(egi, ALICE, "big")["EGI_ACCESS_TOKEN_FILE"])
    alice = user_token(egi, ALICE)
    before = wait_until(lambda: read(token_file), 60, "a token in the file")

    for kind, body in (("shares", {"user": BOB}), ("share-codes", {})):
        refused = as_user(egi, alice, "POST", f"/{kind}/{ALICE}/big", json=body)
        assert refused.status_code == 403, refused.text
        assert "servers of profile 'large' may not be shared" in refused.json()["message"]
        listed = as_user(egi, alice, "GET", f"/{kind}/{ALICE}/big")
        assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
    # nothing was shared, so nothing was taken away
    assert read(token_file) == before
    assert egi.provider.introspect(before)["active"] is True


def test_a_share_is_refused_when_the_tokens_cannot_be_revoked(egi):
    assert login_both(egi)
    started(egi, ALICE)
    token_file = Path(notebook_environ(egi, ALICE)["EGI_ACCESS_TOKEN_FILE"])
    alice = user_token(egi, ALICE)
    before = wait_until(lambda: read(token_file), 60, "a token in the file")

    egi.provider.stop()  # the provider is down: nothing can be revoked
    refused = as_user(egi, alice, "POST", f"/shares/{ALICE}/", json={"user": BOB})
    assert refused.status_code == 503, refused.text
    assert "Nothing was shared" in refused.json()["message"]
    listed = as_user(egi, alice, "GET", f"/shares/{ALICE}/")
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
    # no share: the server has its (unrevoked) token in its file again
    wait_until(lambda: read(token_file) == before, 60, "the token back in the file")


def test_with_another_spawner_the_delivered_token_is_revoked_and_none_until_a_restart(
    egi_hub_factory,
):
    """JupyterHub's local spawner (the demo's): the tokens service is the only way in."""
    config = LOCAL_SPAWNER_CONFIG + sharing_config(free_port())
    config += f"c.Spawner.start_timeout = c.Spawner.http_timeout = {SPAWN_SECONDS}\n"
    egi = egi_hub_factory(config, access_token_lifetime=LIFETIME)
    egi.service_url = f"{egi.hub.url}/services/tokens/token"
    assert login_both(egi)
    copied = server_token(started(egi, ALICE))  # what a guest would copy
    served = wait_for_tokens_service(egi, copied)
    assert served.status_code == 200, served.text
    delivered = served.json()["access_token"]
    alice = user_token(egi, ALICE)

    share = as_user(egi, alice, "POST", f"/shares/{ALICE}/", json={"user": BOB})
    assert share.status_code == 200, share.text
    # at once: the token the server fetched is dead at the provider
    assert egi.provider.introspect(delivered)["active"] is False
    assert_refused_until_restart(egi, copied)
    ended = as_user(egi, alice, "DELETE", f"/shares/{ALICE}/")
    assert ended.status_code == 204, ended.text
    refused = assert_refused_until_restart(egi, copied)
    assert egi.auth_state(ALICE)["access_token"] not in refused.text

    # a restart (a new server token) brings the tokens back; the copy gets nothing
    stop(egi, ALICE)
    restarted = server_token(started(egi, ALICE))
    served = tokens_service(egi, restarted)
    assert served.status_code == 200, served.text
    assert egi.provider.introspect(served.json()["access_token"])["active"] is True
    assert tokens_service(egi, copied).status_code == 403
