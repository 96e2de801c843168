"""A server running from before a hub restart keeps getting refreshed tokens in its Secret.

The authenticator reaches the token Secrets only through its ``tokens_changed_hook``, which
EGISpawner registers when JupyterHub creates a spawner: after a restart that happens for
running servers at start-up, before their tokens are next refreshed.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_spawner_e2e import (
    NS,
    TOKEN_LIFETIME,
    pod,
    secret_tokens,
    spawner_hub,
    started,
    volumes_by_mount,
)
from tests.harness.login import login
from tests.harness.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]


@pytest.fixture
def egi(tmp_path):
    with spawner_hub(tmp_path, "c.JupyterHub.cleanup_servers = False\n") as hub:
        yield hub


def test_refreshed_tokens_reach_the_secret_of_a_server_from_before_the_restart(egi):
    alice = "alice@egi.eu"
    assert login(egi.hub.url, "alice").ok
    started(egi, alice)
    secret_name = volumes_by_mount(pod(egi, alice))["/var/run/secrets/egi.eu/"]["secret"][
        "secretName"
    ]
    before = egi.auth_state(alice)["access_token"]
    egi.hub.restart()
    assert pod(egi, alice)  # the server outlived the hub

    # the background refresh renews the token within the lifetime (generous on a busy host)
    wait_until(
        lambda: egi.auth_state(alice)["access_token"] != before,
        TOKEN_LIFETIME * 10,
        "a refresh after the restart",
    )
    wait_until(
        lambda: (
            (secret_tokens(egi, secret_name) or {}).get("access_token")
            == egi.auth_state(alice)["access_token"]
        ),
        60,
        "the refreshed token in the Secret",
    )
    assert egi.auth_state(alice)["refresh_token"] not in str(secret_tokens(egi, secret_name))
    assert egi.k8s.get("secrets", NS, secret_name) is not None
