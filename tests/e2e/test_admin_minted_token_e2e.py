"""A token someone else minted for a user never reaches the user's access tokens.

Real hub + CHP (the restricted admin role, as the example configuration has it), the
certified provider as EGI Check-in, the tokens service run by the hub. A hub admin may mint
API tokens owned by alice (``POST /hub/api/users/alice/tokens``), with the tokens service's
scope too; such a token would outlive the admin's demotion at Check-in and keep returning
alice's fresh access tokens. The tokens service refuses them, whatever their note, and
tokens they mint in turn; alice's own token keeps working.
"""

from __future__ import annotations

import pytest

from egi_notebooks.services.tokens import TOKEN_SCOPE
from tests.e2e import test_tokens_e2e
from tests.e2e.test_admin_role import Browser
from tests.e2e.test_tokens_e2e import fetch, user_api_token, wait_for_service

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

tokens_hub = test_tokens_e2e.tokens_hub  # the fixture: a hub with add_tokens_service

ALICE = "alice@egi.eu"
ADMIN = "admin@egi.eu"
RESTRICTED_ADMIN = """
from egi_notebooks.hubconfig import restrict_admin_role
restrict_admin_role(c)
"""


def minted(response) -> str:
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_tokens_minted_for_alice_by_an_admin_do_not_reach_her_access_token(tokens_hub):
    egi = tokens_hub(RESTRICTED_ADMIN)
    alice = Browser(egi.hub, "alice")
    admin = Browser(egi.hub, "admin")
    assert egi.user_model(ADMIN)["admin"] is True
    wait_for_service(egi)
    current = egi.auth_state(ALICE)["access_token"]
    scope = f"{TOKEN_SCOPE}!user={ALICE}"

    # alice's own token, made in her browser (as on the hub's token page)
    own = minted(alice.api("POST", f"/users/{ALICE}/tokens", json={"scopes": [scope]}))
    assert fetch(egi, own).json()["access_token"] == current

    # the admin mints tokens owned by alice: with JupyterHub's note, with a note of their
    # choosing that looks like alice's own, and with every scope alice has
    by_admin = [
        minted(admin.api("POST", f"/users/{ALICE}/tokens", json={"scopes": [scope]})),
        minted(
            admin.api(
                "POST",
                f"/users/{ALICE}/tokens",
                json={"scopes": [scope], "note": "Requested via api"},
            )
        ),
        minted(admin.api("POST", f"/users/{ALICE}/tokens", json={"note": "laptop"})),
    ]
    # one that mints alice's tokens, used to mint one more: alice is then the requester
    minter = minted(
        admin.api("POST", f"/users/{ALICE}/tokens", json={"scopes": [f"tokens!user={ALICE}"]})
    )
    by_admin.append(
        minted(
            egi.hub.api("POST", f"/users/{ALICE}/tokens", token=minter, json={"scopes": [scope]})
        )
    )
    # and a hub-managed service's (the harness's admin service)
    by_admin.append(user_api_token(egi, ALICE, [scope]))
    for token in by_admin:
        assert egi.hub.api("GET", "/user", token=token).json()["name"] == ALICE
        refused = fetch(egi, token)
        assert refused.status_code == 403, refused.text
        assert current not in refused.text
        assert "minted" in refused.json()["message"]

    # alice's own token still works, and so do tokens she mints with it
    assert fetch(egi, own).json()["access_token"] == current
    hers = minted(
        alice.api("POST", f"/users/{ALICE}/tokens", json={"scopes": [f"tokens!user={ALICE}"]})
    )
    again = minted(
        egi.hub.api("POST", f"/users/{ALICE}/tokens", token=hers, json={"scopes": [scope]})
    )
    assert fetch(egi, again).json()["access_token"] == current
