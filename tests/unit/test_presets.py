"""The EOSC AAI preset on a real EGICheckinAuthenticator (in process): its traits, the trust it
sets up and the personal project (``pp-...``) as the primary VO."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.entitlements import choose_primary_vo
from egi_notebooks.presets import EOSC_AAI_ISSUER, eosc_aai

NS = "urn:geant:eosc-federation.eu"
PERSONAL = "pp-0190356a-ac97-db53-21c0-df7cd31a47c4"
GROUP = "gp-01903568-c385-49ba-0356-1b4ac60a90ec"


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


def authenticator(**preset) -> EGICheckinAuthenticator:
    c = Config()
    eosc_aai(c, **preset)
    c.EGICheckinAuthenticator.allowed_vos = {GROUP}
    return EGICheckinAuthenticator(config=c)


def test_preset_traits():
    auth = authenticator()
    assert auth.issuer == EOSC_AAI_ISSUER and auth.login_service == "EOSC AAI"
    assert "entitlements" in auth.scope and "eduperson_entitlement" not in auth.scope
    assert auth.entitlements_claims == ["entitlements"]
    assert auth.trusted_entitlement_namespaces == {NS}
    assert auth.trusted_entitlement_authorities == {"proxy.aai.open-science-cloud.ec.europa.eu"}
    assert auth.entitlements_without_authority is True
    # another instance (staging, a test provider): the trust follows the issuer given
    staging = authenticator(issuer="http://127.0.0.1:9/auth/realms/eosc/")
    assert staging.issuer == "http://127.0.0.1:9/auth/realms/eosc"
    assert staging.trusted_entitlement_authorities == {"127.0.0.1"}
    assert staging.trusted_entitlement_namespaces == {NS}


async def test_personal_project_is_the_primary_vo_and_authorization_is_the_operators():
    auth = authenticator()
    entitlements = [f"{NS}:group:{GROUP}:role=owner", f"{NS}:group:{PERSONAL}"]
    model = {
        "name": "u",
        "admin": None,
        "auth_state": {"oauth_user": {"entitlements": entitlements}},
    }
    model = await auth.update_auth_model(model)
    state = model["auth_state"]
    assert state["vos"] == [GROUP, PERSONAL] and state["primary_vo"] == PERSONAL
    assert await auth.check_allowed("u", model)
    # a personal project alone does not authorize: allowed_vos names who may log in
    alone = {
        "name": "v",
        "admin": None,
        "auth_state": {"oauth_user": {"entitlements": [f"{NS}:group:{PERSONAL}"]}},
    }
    alone = await auth.update_auth_model(alone)
    assert alone["auth_state"]["primary_vo"] == PERSONAL
    assert not await auth.check_allowed("v", alone)
    # Check-in's namespace is not EOSC's
    foreign = {
        "name": "w",
        "admin": None,
        "auth_state": {
            "oauth_user": {
                "entitlements": [f"urn:mace:egi.eu:group:{GROUP}:role=member#aai.egi.eu"]
            }
        },
    }
    foreign = await auth.update_auth_model(foreign)
    assert foreign["auth_state"]["vos"] == [] and not await auth.check_allowed("w", foreign)


def test_prefix_entries_of_vo_priority():
    assert choose_primary_vo(["gp-1", "pp-2", "pp-3"], ["pp-*"]) == "pp-2"
    assert choose_primary_vo(["gp-1", "gp-2"], ["pp-*"]) == "gp-1"  # none: provider order
    assert choose_primary_vo(["pp-1", "vo.a"], ["vo.a", "pp-*"]) == "vo.a"  # order of priority
    assert choose_primary_vo(["x*"], ["x*"]) == "x*"  # a literal star still matches itself
    assert choose_primary_vo([], ["pp-*"]) is None
