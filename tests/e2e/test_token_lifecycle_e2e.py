"""A new login revokes the grant it replaces: live offline tokens do not pile up.

Real hub + CHP and the real local OIDC provider; the provider's introspection tells which
tokens are still alive.
"""

from __future__ import annotations

import pytest

from tests.harness.login import login

# the certified provider, as EGI Check-in
pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

ALICE = "alice@egi.eu"


def test_a_second_login_revokes_the_refresh_token_it_replaces(egi_hub_factory):
    egi = egi_hub_factory()
    assert login(egi.hub.url, "alice").ok
    first = egi.auth_state(ALICE)
    assert first.get("refresh_token"), "the provider gave no refresh token (offline_access)"
    assert login(egi.hub.url, "alice").ok  # another browser, another grant
    second = egi.auth_state(ALICE)
    assert second["refresh_token"] != first["refresh_token"]
    assert not egi.provider.introspect(first["refresh_token"])["active"]
    assert not egi.provider.introspect(first["access_token"])["active"]
    assert egi.provider.introspect(second["refresh_token"])["active"]
    assert egi.provider.introspect(second["access_token"])["active"]
    assert egi.provider.token_counts("alice") == {"access": 1, "refresh": 1}
    # the hub still works with the new grant
    r = egi.hub.api("GET", f"/users/{ALICE}")
    assert (
        r.status_code == 200 and r.json()["auth_state"]["refresh_token"] == second["refresh_token"]
    )
