"""Hub admins of the example configuration never see a user's auth_state.

auth_state holds the users' Check-in refresh tokens, which never leave the hub, not even to
admins. ``jupyterhub_config.py.example`` (run as ``test_example_config.py`` runs it: its own
text, placeholders filled in) redefines the ``admin`` role without ``admin:auth_state``
(``egi_notebooks.hubconfig.restrict_admin_role``). An admin made by the authenticator (the
``admin`` demo user holds the admin entitlement), in the browser and with an API token of
their own, gets no auth_state from the hub API, cannot mint a token that could, and can still
administer: the admin page, the user list, starting and stopping another user's server, which
the hub and the spawner still do with the user's tokens.

The harness's own admin service additionally holds a test-only role with ``admin:auth_state``
(tests/harness/hub.py): it is how these tests see that there is a refresh token to hide.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from tests.e2e.test_example_config import NAMESPACE, deployment  # noqa: F401 (fixture)
from tests.harness.hub import HubProcess
from tests.harness.login import login

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

ALICE = "alice@egi.eu"
ADMIN = "admin@egi.eu"


class Browser:
    """A logged-in browser calling the hub API with its cookies (and the XSRF header the hub
    asks of cookie-authenticated API requests)."""

    def __init__(self, hub: HubProcess, username: str) -> None:
        self.hub = hub
        result = login(hub.url, username)
        assert result.ok, result.response.text[:300]
        self.client = result.client
        home = self.client.get(f"{hub.url}/hub/home")
        assert home.status_code == 200, home.text[:300]

    def xsrf(self) -> str:
        values = [c.value for c in self.client.cookies.jar if c.name == "_xsrf"]
        assert values, "the hub set no _xsrf cookie"
        return values[-1]

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-XSRFToken": self.xsrf(), **kw.pop("headers", {})}
        return self.client.request(method, f"{self.hub.hub_api_url}{path}", headers=headers, **kw)


def token_api(hub: HubProcess, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return hub.api(method, path, token=token, **kw)


@pytest.fixture(scope="module")
def users(deployment):  # noqa: F811 (the imported fixture)
    """alice and admin signed in through the provider; ``(hub, emulator, admin browser,
    alice's stored auth_state as the harness sees it)``."""
    hub, _, emulator = deployment
    Browser(hub, "alice")
    admin = Browser(hub, "admin")
    assert hub.api("GET", f"/users/{ADMIN}").json()["admin"] is True
    state = hub.api("GET", f"/users/{ALICE}").json().get("auth_state") or {}
    # what there is to hide: the harness's test-only role reads it
    assert state.get("refresh_token") and state.get("access_token"), state.keys()
    return hub, emulator, admin, state


def assert_no_auth_state(r: httpx.Response, state: dict[str, Any]) -> None:
    assert r.status_code == 200, r.text[:300]
    assert "auth_state" not in r.json(), sorted(r.json())
    for key in ("refresh_token", "access_token", "id_token"):
        if state.get(key):
            assert state[key] not in r.text, f"{key} in the answer"


def test_admin_role_has_no_auth_state_scope(users):
    hub, _, _, _ = users
    role = hub.api("GET", f"/users/{ADMIN}").json()
    assert "admin" in role["roles"], role["roles"]
    # the hub's own view of the admin user's permissions, through its token
    admin_token = hub.api("POST", f"/users/{ADMIN}/tokens", json={"note": "scopes"}).json()
    me = token_api(hub, admin_token["token"], "GET", "/user").json()
    assert "admin:auth_state" not in me["scopes"] and "admin:users" not in me["scopes"]
    assert "admin-ui" in me["scopes"] and "admin:servers" in me["scopes"], me["scopes"]


def test_admin_in_the_browser_gets_no_auth_state(users):
    hub, _, admin, state = users
    assert_no_auth_state(admin.api("GET", f"/users/{ALICE}"), state)
    assert_no_auth_state(admin.api("GET", f"/users/{ADMIN}"), {})
    listing = admin.api("GET", "/users")
    assert listing.status_code == 200 and ALICE in {u["name"] for u in listing.json()}
    assert all("auth_state" not in u for u in listing.json())
    assert state["refresh_token"] not in listing.text
    # the user-model PATCH answers with the whole auth_state: admins may not use it
    patched = admin.api("PATCH", f"/users/{ALICE}", json={"admin": False})
    assert patched.status_code == 403, patched.text[:300]
    assert state["refresh_token"] not in patched.text
    assert admin.client.get(f"{hub.url}/hub/admin").status_code == 200


def test_admin_api_token_gets_no_auth_state(users):
    hub, _, admin, state = users
    made = admin.api("POST", f"/users/{ADMIN}/tokens", json={"note": "admin's token"})
    assert made.status_code in (200, 201), made.text[:300]
    token = made.json()["token"]
    assert_no_auth_state(token_api(hub, token, "GET", f"/users/{ALICE}"), state)
    patched = token_api(hub, token, "PATCH", f"/users/{ALICE}", json={"admin": False})
    assert patched.status_code == 403 and state["refresh_token"] not in patched.text
    # nor can an admin mint a token that could read it, for themselves or for the user
    for owner in (ADMIN, ALICE):
        asked = admin.api("POST", f"/users/{owner}/tokens", json={"scopes": ["admin:auth_state"]})
        # the hub answers 400 "Not assigning requested scopes ... not held by User ..."
        assert asked.status_code in (400, 403), (owner, asked.status_code, asked.text[:300])
        assert "token" not in asked.json(), asked.text[:300]


def _wait(predicate, what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not reached within {timeout} s: {what}")


def test_admin_still_starts_and_stops_another_users_server(users):
    hub, emulator, admin, _ = users
    made = admin.api("POST", f"/users/{ADMIN}/tokens", json={"note": "admin work"})
    token = made.json()["token"]
    r = token_api(hub, token, "POST", f"/users/{ALICE}/server", json={"profile": "small"})
    assert r.status_code in (201, 202), r.text[:300]
    model = _wait(
        lambda: (m := token_api(hub, token, "GET", f"/users/{ALICE}").json())
        .get("servers", {}).get("", {}).get("ready") and m,
        "alice's server ready, as the admin sees it",
    )  # fmt: skip
    assert "auth_state" not in model
    # the hub still uses alice's tokens: the spawner wrote her access token to her Secret
    current = hub.api("GET", f"/users/{ALICE}").json()["auth_state"]["access_token"]

    def secret_token() -> str | None:
        for secret in emulator.list("secrets", NAMESPACE):
            if secret["metadata"]["name"].startswith("egi-token-alice"):
                return base64.b64decode(secret["data"]["access_token"]).decode()
        return None

    assert _wait(lambda: secret_token() == current, "alice's token Secret is current")
    r = token_api(hub, token, "DELETE", f"/users/{ALICE}/server")
    assert r.status_code in (202, 204), r.text[:300]
    hub.wait_for_server(ALICE, ready=False, timeout=90)
