"""Identity hardening end to end: real JupyterHub + CHP, the real local OIDC provider.

The hub is configured as ``jupyterhub_config.py.example`` is (``allowed_vos`` and
``admin_entitlements = {"vo.notebooks.egi.eu:role=manager"}``); entitlements and voperson_id
come in userinfo only, as on Check-in. Entitlements of another namespace or authority that
carry an allowed VO's name neither log in nor make an admin, at login and at refresh.
"""

from __future__ import annotations

import pytest

from egi_notebooks.demo.accounts import demo_user, demo_users, entitlement
from tests.harness.hub import LOCAL_SPAWNER_CONFIG
from tests.harness.login import login
from tests.harness.waiting import wait_until

# the certified provider, as EGI Check-in
pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

NOTEBOOKS = "vo.notebooks.egi.eu"
EVIL_MANAGER = f"urn:mace:evil.org:group:{NOTEBOOKS}:role=manager#evil.org"
EVIL_AUTHORITY = f"urn:mace:egi.eu:group:{NOTEBOOKS}:role=manager#evil.org"
CLAIMS = ["eduperson_entitlement", "voperson_id"]
FAST_REFRESH = """
c.Authenticator.auth_refresh_age = 1
c.EGICheckinAuthenticator.refresh_leeway = 3
"""


def users() -> dict:
    found = demo_users()
    found["eve"] = demo_user("eve", [EVIL_MANAGER, EVIL_AUTHORITY])
    # a foreign manager entitlement next to a real membership
    found["trudy"] = demo_user("trudy", [EVIL_MANAGER, entitlement("vo.access.egi.eu")])
    found["kelvin"] = demo_user("kelvin", [entitlement(NOTEBOOKS)])
    found["kelvin"]["claims"]["voperson_id"] = "\u212aelvin@egi.eu"  # NFKC: Kelvin@egi.eu
    found["upper"] = demo_user("upper", [entitlement(NOTEBOOKS)])
    found["upper"]["claims"]["voperson_id"] = "Alice@egi.eu"  # would fold onto alice@egi.eu
    found["hoarder"] = demo_user(
        "hoarder", [entitlement(f"vo{i}.example.org") for i in range(1200)]
    )
    return found


@pytest.fixture
def egi(egi_hub_factory):
    return egi_hub_factory(FAST_REFRESH, users=users(), userinfo_only_claims=CLAIMS)


def test_foreign_entitlements_neither_log_in_nor_make_admins(egi):
    eve = login(egi.hub.url, "eve")
    assert eve.response.status_code == 403, eve.response.text[:300]
    assert egi.hub.api("GET", "/users/eve@egi.eu").status_code == 404

    trudy = login(egi.hub.url, "trudy")
    assert trudy.ok, trudy.response.text[:300]
    model = egi.user_model("trudy@egi.eu")
    assert model["admin"] is False
    assert model["groups"] == ["vo.access.egi.eu"]
    state = model["auth_state"]
    assert state["vos"] == ["vo.access.egi.eu"] and state["primary_vo"] == "vo.access.egi.eu"
    # what the spawner reads: trusted entitlements only
    assert state["entitlements"] == [entitlement("vo.access.egi.eu")]
    assert EVIL_MANAGER in state["oauth_user"]["eduperson_entitlement"]  # the claims as sent

    admin = login(egi.hub.url, "admin")  # the real manager entitlement still counts
    assert admin.ok and egi.user_model("admin@egi.eu")["admin"] is True


def test_a_manager_whose_entitlement_turns_foreign_loses_admin_and_access_at_refresh(
    egi_hub_factory,
):
    egi = egi_hub_factory(
        FAST_REFRESH, access_token_lifetime=8, users=users(), userinfo_only_claims=CLAIMS
    )
    admin = login(egi.hub.url, "admin")
    assert admin.ok and egi.user_model("admin@egi.eu")["admin"] is True
    before = egi.auth_state("admin@egi.eu")["access_token"]
    egi.provider.patch_claims("admin", {"eduperson_entitlement": [EVIL_MANAGER]})

    def refreshed() -> bool:
        # a page request once the refresh window opens makes the hub refresh
        admin.client.get(f"{egi.hub.url}/hub/home")
        return egi.auth_state("admin@egi.eu").get("access_token") != before

    wait_until(refreshed, what="the refresh")
    model = egi.user_model("admin@egi.eu")
    assert model["admin"] is False and model["groups"] == []
    assert model["auth_state"]["vos"] == [] and not model["auth_state"].get("access_token")


def test_usernames_not_in_normal_form_are_refused(egi):
    for name in ("kelvin", "upper"):
        result = login(egi.hub.url, name)
        assert result.response.status_code == 403, (name, result.response.text[:300])
    users = egi.hub.api("GET", "/users").json()
    assert {u["name"] for u in users} <= {"alice@egi.eu"}  # nobody was folded into a name
    assert "unusable user identifier" in egi.hub.log() or "not a valid user" in egi.hub.log()


def test_too_many_entitlements_are_refused_with_a_clear_message(egi):
    result = login(egi.hub.url, "hoarder")
    assert result.response.status_code == 403
    assert "1,200 entitlements" in result.response.text
    assert "max_entitlements" in egi.hub.log()
    assert egi.hub.api("GET", "/users/hoarder@egi.eu").status_code == 404


def test_a_login_never_takes_over_an_account_bound_to_another_identity(egi_hub_factory):
    """mallory's egi-notebooks-hub 1.0 account is named after her changeable
    preferred_username, which she set to bob's voperson_id: after the switch to voperson_id
    names bob's login must not make him mallory's hub user (her servers, her home)."""
    found = users()
    found["mallory"] = demo_user("mallory", [entitlement("vo.access.egi.eu")])
    found["mallory"]["claims"]["preferred_username"] = "bob@egi.eu"
    compat = 'c.EGICheckinAuthenticator.username_claim = "preferred_username"\n'
    egi = egi_hub_factory(compat + LOCAL_SPAWNER_CONFIG, users=found)
    assert login(egi.hub.url, "mallory").ok
    mallory = egi.auth_state("bob@egi.eu")
    assert mallory["oauth_user"]["voperson_id"] == "mallory@egi.eu"

    egi.hub.config = egi.authenticator_config() + LOCAL_SPAWNER_CONFIG
    egi.hub.restart()
    bob = login(egi.hub.url, "bob")
    assert bob.response.status_code == 403, bob.response.text[:300]
    assert "belongs to another" in bob.response.text
    after = egi.auth_state("bob@egi.eu")
    assert after["oauth_user"]["sub"] == mallory["oauth_user"]["sub"]  # nothing of bob's stored
    log = egi.hub.log()
    assert "Login of 'bob@egi.eu' refused" in log
    assert mallory["access_token"] not in log
    # a login with the identity the account is bound to still works
    alice = login(egi.hub.url, "alice")
    assert alice.ok and egi.auth_state("alice@egi.eu")["identity"].startswith("sub:")
