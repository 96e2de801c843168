"""In the production rehearsal (``docs/deploy/values.yaml`` as z2jh runs it), a hub admin
never sees a user's auth_state (the refresh token stays in the hub) and still administers.

The deployment is the rehearsal's own fixture (tests/e2e/test_production_rehearsal.py);
``test_admin_role.py`` says what is checked and why.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_admin_role import ADMIN, ALICE, Browser, assert_no_auth_state, token_api
from tests.e2e.test_production_rehearsal import deployment  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]


def test_admin_gets_no_auth_state_and_still_administers(deployment):  # noqa: F811
    hub = deployment.hub
    Browser(hub, "alice")
    admin = Browser(hub, "admin")
    state = deployment.auth_state(ALICE)  # the harness's test-only role reads it
    assert state.get("refresh_token"), state.keys()
    assert hub.api("GET", f"/users/{ADMIN}").json()["admin"] is True

    assert_no_auth_state(admin.api("GET", f"/users/{ALICE}"), state)
    patched = admin.api("PATCH", f"/users/{ALICE}", json={"admin": False})
    assert patched.status_code == 403 and state["refresh_token"] not in patched.text
    made = admin.api("POST", f"/users/{ADMIN}/tokens", json={"note": "admin's token"})
    assert made.status_code in (200, 201), made.text[:300]
    token = made.json()["token"]
    assert_no_auth_state(token_api(hub, token, "GET", f"/users/{ALICE}"), state)
    me = token_api(hub, token, "GET", "/user").json()
    assert "admin:auth_state" not in me["scopes"], me["scopes"]

    # admin work goes on: the admin page and the user list
    assert admin.client.get(f"{hub.url}/hub/admin").status_code == 200
    listing = token_api(hub, token, "GET", "/users")
    assert listing.status_code == 200 and ALICE in {u["name"] for u in listing.json()}
    assert state["refresh_token"] not in listing.text
