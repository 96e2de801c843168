"""Identity and claim hardening of EGICheckinAuthenticator (in process, no network).

Entitlements count only from trusted namespaces and authorities; usernames are taken only
in normal form and from configured claims; the number of entitlements is capped and only
VOs the configuration names become hub groups; id_tokens with several audiences need
``azp``, and a userinfo answer about another subject is refused.
"""

from __future__ import annotations

import time
import unicodedata

import jwt
import pytest
from oauthenticator.generic import GenericOAuthenticator
from tornado import web

from egi_notebooks import entitlements as ent
from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.auth.discovery import IdTokenError
from egi_notebooks.entitlements import matches_any, parse_entitlements, parse_pattern
from tests.unit.auth.helpers import make_authenticator as make

from .test_tokens_and_discovery import ISSUER, KEY, id_token, metadata, served

NOTEBOOKS = "vo.notebooks.egi.eu"
ACCESS = "vo.access.egi.eu"
MEMBER = f"urn:mace:egi.eu:group:{NOTEBOOKS}:role=member#aai.egi.eu"
MANAGER = f"urn:mace:egi.eu:group:{NOTEBOOKS}:role=manager#aai.egi.eu"
# the finding: another namespace and authority, the same VO name and role
EVIL_MANAGER = f"urn:mace:evil.org:group:{NOTEBOOKS}:role=manager#evil.org"
EVIL_AUTHORITY = f"urn:mace:egi.eu:group:{NOTEBOOKS}:role=manager#evil.org"
NO_AUTHORITY = f"urn:mace:egi.eu:group:{NOTEBOOKS}:role=manager"
EOSC_NODE = "https://proxy.aai.open-science-cloud.ec.europa.eu"
EOSC_MEMBER = "urn:geant:eosc-federation.eu:group:vo.eosc.eu:role=member"


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


def example(**traits) -> EGICheckinAuthenticator:
    """What jupyterhub_config.py.example configures."""
    return make(
        allowed_vos={NOTEBOOKS, ACCESS},
        allowed_entitlements={"vo.example.org:notebooks:role=member"},
        admin_entitlements={f"{NOTEBOOKS}:role=manager"},
        vo_priority=[NOTEBOOKS, ACCESS],
        **traits,
    )


def model(*entitlements, name="u@egi.eu", sub="s", claim="eduperson_entitlement") -> dict:
    return {
        "name": name,
        "admin": None,
        "auth_state": {"oauth_user": {"sub": sub, claim: list(entitlements)}},
    }


async def login_model(auth, *entitlements, **kw) -> dict:
    m = await auth.update_auth_model(model(*entitlements, **kw))
    if auth.manage_groups:
        m = await auth._apply_managed_groups(m)
    return m


# ---- 1. foreign entitlements -------------------------------------------------------------


@pytest.mark.parametrize("foreign", [EVIL_MANAGER, EVIL_AUTHORITY, NO_AUTHORITY])
async def test_a_foreign_entitlement_neither_logs_in_nor_makes_an_admin(foreign):
    auth = example()
    m = await login_model(auth, foreign)
    assert m["admin"] is False
    assert m["auth_state"]["vos"] == [] and m["auth_state"]["primary_vo"] is None
    assert m["auth_state"]["entitlements"] == []  # the spawner never sees it
    assert m["groups"] == []
    assert not await auth.check_allowed("u@egi.eu", m)


async def test_foreign_vos_are_not_primary_vo_nor_groups_next_to_real_ones():
    auth = example()
    evil_member = f"urn:mace:evil.org:group:{NOTEBOOKS}:role=member#evil.org"
    m = await login_model(auth, evil_member, f"urn:mace:egi.eu:group:{ACCESS}#aai.egi.eu")
    assert m["auth_state"]["vos"] == [ACCESS]
    assert m["auth_state"]["primary_vo"] == ACCESS
    assert m["groups"] == [ACCESS]
    assert await auth.check_allowed("u@egi.eu", m)


async def test_the_checkin_entitlement_still_counts():
    auth = example()
    m = await login_model(auth, MANAGER)
    assert m["admin"] is True and await auth.check_allowed("u@egi.eu", m)
    assert m["auth_state"]["vos"] == [NOTEBOOKS] and m["groups"] == [NOTEBOOKS]
    assert m["auth_state"]["entitlements"] == [MANAGER]


async def test_a_full_urn_pattern_stays_exact_and_may_name_a_foreign_entitlement():
    # the operator named that namespace and authority: it matches (and only it)
    auth = make(allowed_entitlements={EVIL_MANAGER}, admin_entitlements={EVIL_MANAGER})
    m = await login_model(auth, EVIL_MANAGER)
    assert m["admin"] is True and await auth.check_allowed("u@egi.eu", m)
    # not a VO of the user: the spawner and the groups see trusted entitlements only
    assert m["auth_state"]["vos"] == [] and m["auth_state"]["entitlements"] == []
    other = await login_model(auth, EVIL_MANAGER.replace("#evil.org", "#other.org"))
    assert other["admin"] is False and not await auth.check_allowed("u@egi.eu", other)


async def test_a_full_urn_pattern_without_authority_needs_a_trusted_one():
    pattern = f"urn:mace:egi.eu:group:{NOTEBOOKS}:role=manager"
    auth = make(admin_entitlements={pattern}, allowed_entitlements={pattern})
    assert (await login_model(auth, MANAGER))["admin"] is True
    for foreign in (EVIL_AUTHORITY, NO_AUTHORITY):
        m = await login_model(auth, foreign)
        assert m["admin"] is False and not await auth.check_allowed("u@egi.eu", m)


def test_trust_defaults_per_issuer():
    checkin = make()
    assert checkin.trusted_entitlement_namespaces == {"urn:mace:egi.eu"}
    assert checkin.trusted_entitlement_authorities == {"aai.egi.eu"}
    assert checkin.entitlements_without_authority is False
    # any other issuer (a Keycloak realm, the local provider): Check-in's
    local = make(oidc_issuer="http://127.0.0.1:8080/auth/realms/egi")
    assert local.trusted_entitlement_namespaces == {"urn:mace:egi.eu"}
    node = make(oidc_issuer=EOSC_NODE)
    assert node.trusted_entitlement_namespaces == {"urn:geant:eosc-federation.eu"}
    assert node.entitlements_without_authority is True
    portal = make(oidc_issuer="https://aai.eosc-portal.eu/auth/realms/core")
    assert portal.trusted_entitlement_namespaces == {"urn:geant:eosc-portal.eu"}
    assert portal.trusted_entitlement_authorities == {"aai.eosc-portal.eu"}
    # set explicitly: the operator's values win
    mine = make(
        oidc_issuer=EOSC_NODE,
        trusted_entitlement_namespaces={"urn:mace:egi.eu", "urn:geant:eosc-federation.eu"},
        trusted_entitlement_authorities={"aai.egi.eu"},
        entitlements_without_authority=False,
    )
    assert mine.trusted_entitlement_namespaces == {
        "urn:mace:egi.eu",
        "urn:geant:eosc-federation.eu",
    }
    assert mine.entitlements_without_authority is False


async def test_eosc_node_entitlements_without_authority_count_there_only():
    node = make(oidc_issuer=EOSC_NODE, allowed_vos={"vo.eosc.eu"})
    m = await login_model(node, EOSC_MEMBER, MEMBER, claim="entitlements")
    assert m["auth_state"]["vos"] == ["vo.eosc.eu"]  # Check-in's namespace is not trusted there
    assert await node.check_allowed("u", m)
    checkin = make(allowed_vos={"vo.eosc.eu"})
    assert not await checkin.check_allowed("u", await login_model(checkin, EOSC_MEMBER))


def test_trust_is_case_insensitive_for_namespace_and_authority():
    trust = ent.EntitlementTrust(frozenset({"urn:mace:egi.eu"}), frozenset({"aai.egi.eu"}))
    (upper,) = parse_entitlements([f"URN:MACE:EGI.EU:group:{NOTEBOOKS}#AAI.EGI.EU"])
    assert trust.trusts(upper)
    assert matches_any([parse_pattern(NOTEBOOKS)], [upper], trust)
    (evil,) = parse_entitlements([EVIL_MANAGER])
    assert not matches_any([parse_pattern(f"{NOTEBOOKS}:role=manager")], [evil], trust)


# ---- 2. usernames ------------------------------------------------------------------------

HEX_ID = "2f1e4a0c9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f@egi.eu"


@pytest.mark.parametrize(
    "value",
    [
        "\u212a" + HEX_ID[1:],  # KELVIN SIGN: NFKC makes it K, JupyterHub then k
        HEX_ID.upper(),  # a different identity folded by JupyterHub's lowercasing
        f" {HEX_ID}",
        f"{HEX_ID}\n",
        "ab\u00ad@egi.eu",  # soft hyphen
        "ａｌｉｃｅ@egi.eu",  # fullwidth letters
        "alice@egi.eu/../bob",
        "",
    ],
)
def test_a_username_claim_not_in_normal_form_is_refused(value):
    auth = make()
    with pytest.raises(web.HTTPError) as info:
        auth.user_info_to_username({"voperson_id": value, "sub": "s"})
    assert info.value.status_code == 403


def test_kelvin_sign_really_folds_onto_another_name():
    # why the check exists: without it these two identities share one hub user
    assert unicodedata.normalize("NFKC", "\u212aa@egi.eu").lower() == "ka@egi.eu"


@pytest.mark.parametrize("value", [HEX_ID, "alice@egi.eu", "0a1b@egi.eu"])
def test_checkin_voperson_ids_and_demo_users_pass(value):
    assert make().user_info_to_username({"voperson_id": value}) == value


def test_no_silent_fallback_to_sub_unless_configured():
    with pytest.raises(web.HTTPError) as info:
        make().user_info_to_username({"sub": "s-123"})
    assert info.value.status_code == 403
    auth = make(username_fallback_claims=["sub"])
    assert auth.user_info_to_username({"sub": HEX_ID}) == HEX_ID
    # the fallback claim is checked too
    with pytest.raises(web.HTTPError):
        auth.user_info_to_username({"sub": "\u212a"})


def test_compatibility_mode_keeps_1_0_names():
    # egi-notebooks-hub 1.0 named users after preferred_username, lowercased by JupyterHub
    auth = make(username_claim="preferred_username")
    assert auth.user_info_to_username({"preferred_username": "Alice"}) == "Alice"
    assert auth.normalize_username("Alice") == "alice"
    with pytest.raises(web.HTTPError):
        auth.user_info_to_username({"preferred_username": "\u212aarl"})


def test_the_username_pattern_is_configurable_and_checked_at_start_up():
    auth = make(username_claim_pattern=r"^[0-9a-f]{64}@egi\.eu$")
    assert auth.user_info_to_username({"voperson_id": HEX_ID}) == HEX_ID
    with pytest.raises(web.HTTPError):
        auth.user_info_to_username({"voperson_id": "alice@egi.eu"})
    with pytest.raises(ValueError, match="username_claim_pattern"):
        make(username_claim_pattern="([")


# ---- 3. unbounded entitlements -----------------------------------------------------------


def many(n: int, start: int = 0) -> list[str]:
    return [f"urn:mace:egi.eu:group:vo{i}.eu:role=member#aai.egi.eu" for i in range(start, n)]


async def test_too_many_entitlements_refuse_the_login_with_a_clear_message():
    auth = example(allow_all=True)
    with pytest.raises(web.HTTPError) as info:
        auth.build_auth_state_dict(
            {"access_token": "a", "token_type": "Bearer"},
            {"sub": "s", "eduperson_entitlement": [MEMBER, *many(auth.max_entitlements)]},
        )
    assert info.value.status_code == 403
    message = info.value.log_message
    assert (
        f"{auth.max_entitlements + 1:,} entitlements" in message and "max_entitlements" in message
    )
    # the same answer on a refresh ends the authorization (even for allow_all)
    m = await login_model(auth, MEMBER, *many(auth.max_entitlements))
    assert m["auth_state"]["vos"] == [] and m["admin"] is False
    assert not await auth.is_still_authorized("u@egi.eu", m)
    # at the cap: fine
    ok = await login_model(auth, MEMBER, *many(auth.max_entitlements - 1))
    assert await auth.is_still_authorized("u@egi.eu", ok)


async def test_the_cap_counts_every_entitlement_claim():
    auth = make(max_entitlements=10, allow_all=True)
    m = {
        "name": "u",
        "admin": None,
        "auth_state": {
            "oauth_user": {
                "sub": "s",
                "eduperson_entitlement": many(6),
                "entitlements": many(11, 6),
            }
        },
    }
    m = await auth.update_auth_model(m)
    assert not await auth.is_still_authorized("u", m)


async def test_only_configured_vos_become_hub_groups():
    auth = make(
        allowed_vos={NOTEBOOKS},
        allowed_entitlements={"vo.example.org:notebooks"},
        admin_entitlements={"urn:mace:egi.eu:group:vo.admins.eu:role=manager#aai.egi.eu"},
        allowed_groups={"vo.grouped.eu"},
        vo_groups={"vo.extra.eu"},
    )
    named = [NOTEBOOKS, "vo.example.org", "vo.admins.eu", "vo.grouped.eu", "vo.extra.eu"]
    mine = [f"urn:mace:egi.eu:group:{vo}:role=member#aai.egi.eu" for vo in named]
    m = await login_model(auth, *mine, *many(50))
    assert m["groups"] == sorted(named)
    assert len(m["auth_state"]["vos"]) == 55  # auth_state keeps every trusted VO


async def test_without_any_vo_configured_no_vo_groups_are_made():
    auth = make(allow_all=True)
    m = await login_model(auth, MEMBER, *many(20))
    assert m["groups"] == []
    assert len(m["auth_state"]["vos"]) == 21


async def test_vo_names_that_are_no_valid_group_names_make_no_group():
    weird = ["vo!x", "vo x", "vo/x", "vö.eu", "a" * 300, "vo\u212a.eu"]
    auth = make(allowed_vos={NOTEBOOKS, *weird})
    ents = [f"urn:mace:egi.eu:group:{vo}#aai.egi.eu" for vo in weird]
    m = await login_model(auth, MEMBER, *ents)
    assert m["groups"] == [NOTEBOOKS]
    with pytest.raises(ValueError, match="vo_group_pattern"):
        make(vo_group_pattern="(")


# ---- 4. audiences and userinfo subject ---------------------------------------------------


async def test_several_audiences_need_azp_equal_to_the_client():
    meta = metadata(served())
    with pytest.raises(IdTokenError, match="azp"):
        await meta.verify_id_token(id_token(aud=["hub", "other"]), "hub")
    with pytest.raises(IdTokenError, match="azp"):
        await meta.verify_id_token(id_token(aud=["hub", "other"], azp="other"), "hub")
    claims = await meta.verify_id_token(id_token(aud=["hub", "other"], azp="hub"), "hub")
    assert claims["azp"] == "hub"


async def test_azp_when_present_must_be_the_client():
    meta = metadata(served())
    with pytest.raises(IdTokenError, match="azp"):
        await meta.verify_id_token(id_token(azp="other"), "hub")
    assert (await meta.verify_id_token(id_token(azp="hub"), "hub"))["sub"] == "s"
    assert (await meta.verify_id_token(id_token(aud=["hub"]), "hub"))["sub"] == "s"


async def test_an_oversized_id_token_says_so():
    meta = metadata(served())
    big = id_token(eduperson_entitlement=many(3000))
    with pytest.raises(IdTokenError, match="characters"):
        await meta.verify_id_token(big, "hub")


def userinfo(monkeypatch, answer: dict) -> None:
    async def fake(self, token_info):
        return dict(answer)

    monkeypatch.setattr(GenericOAuthenticator, "token_to_user", fake)


async def test_a_userinfo_answer_about_another_subject_is_refused_at_login(monkeypatch):
    auth = make()
    userinfo(monkeypatch, {"sub": "mallory", "voperson_id": "mallory@egi.eu"})
    token_info = {"access_token": "a", "token_type": "Bearer", "id_token_claims": {"sub": "alice"}}
    with pytest.raises(web.HTTPError) as info:
        await auth.token_to_user(token_info)
    assert info.value.status_code == 403
    userinfo(monkeypatch, {"voperson_id": "alice@egi.eu"})  # no sub at all
    with pytest.raises(web.HTTPError):
        await auth.token_to_user(token_info)
    userinfo(monkeypatch, {"sub": "alice", "voperson_id": "alice@egi.eu"})
    assert (await auth.token_to_user(token_info))["voperson_id"] == "alice@egi.eu"


class FakeUser:
    name = "alice@egi.eu"
    spawners: dict = {}


async def test_a_userinfo_answer_about_another_subject_is_refused_at_refresh(monkeypatch):
    # the refresh response's verified id_token names alice, userinfo answers about mallory
    auth = make(oidc_issuer=ISSUER, client_id="hub", allowed_vos={NOTEBOOKS})
    auth.metadata = metadata(served())
    stored = model(MEMBER, sub="alice")["auth_state"]
    fresh = {"access_token": "a", "token_type": "Bearer", "id_token": id_token(sub="alice")}
    userinfo(monkeypatch, {"sub": "mallory", "eduperson_entitlement": [MANAGER]})
    m = await auth.auth_model_from_refresh(FakeUser(), stored, fresh)
    assert m["auth_state"]["vos"] == [] and m["refused"]
    assert not await auth.is_still_authorized("alice@egi.eu", m)
    userinfo(monkeypatch, {"sub": "alice", "eduperson_entitlement": [MEMBER]})
    m = await auth.auth_model_from_refresh(FakeUser(), stored, fresh)
    assert m["auth_state"]["vos"] == [NOTEBOOKS]
    assert await auth.is_still_authorized("alice@egi.eu", m)


async def test_refreshed_claims_about_another_subject_than_the_stored_id_token_end_it():
    # a refresh without a new id_token: the stored one (verified at login) names the subject
    auth = make(allowed_vos={NOTEBOOKS})
    stored = jwt.encode(
        {"iss": ISSUER, "aud": "hub", "sub": "alice", "exp": int(time.time()) + 60}, KEY, "RS256"
    )
    m = model(MEMBER, sub="mallory")
    m["auth_state"]["id_token"] = stored
    m = await auth.update_auth_model(m)
    assert m["auth_state"]["vos"] == []
    assert not await auth.is_still_authorized("u@egi.eu", m)
    ok = model(MEMBER, sub="alice")
    ok["auth_state"]["id_token"] = stored
    assert await auth.is_still_authorized("u@egi.eu", await auth.update_auth_model(ok))
