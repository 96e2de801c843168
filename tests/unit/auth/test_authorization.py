"""Authorization, usernames and configuration of EGICheckinAuthenticator (in process)."""

from __future__ import annotations

import pytest
from tornado import web
from traitlets import TraitError

from tests.unit.auth.helpers import make_authenticator as make

MEMBER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
MANAGER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=manager#aai.egi.eu"
OTHER = "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"


@pytest.fixture(autouse=True)
def crypt_key(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)


def model(*entitlements, admin=None, name="u@egi.eu") -> dict:
    return {
        "name": name,
        "admin": admin,
        "auth_state": {"oauth_user": {"eduperson_entitlement": list(entitlements)}},
    }


def test_checkin_defaults():
    auth = make()
    assert auth.issuer == "https://aai.egi.eu/auth/realms/egi"
    assert make(checkin_host="aai-dev.egi.eu").issuer == "https://aai-dev.egi.eu/auth/realms/egi"
    assert (
        make(oidc_issuer="https://idp.example/realms/x/").issuer == "https://idp.example/realms/x"
    )
    assert auth.scope == [
        "openid",
        "profile",
        "email",
        "offline_access",
        "eduperson_entitlement",
        "voperson_id",
    ]
    assert auth.enable_pkce and auth.login_service == "EGI Check-in"
    assert auth.username_claim == "voperson_id" and auth.manage_groups
    assert auth.basic_auth is True
    assert make(token_endpoint_auth_method="client_secret_post").basic_auth is False


def test_start_up_errors_name_the_trait(monkeypatch):
    with pytest.raises(ValueError, match="EGICheckinAuthenticator.enable_auth_state"):
        make(enable_auth_state=False)
    with pytest.raises((ValueError, TraitError), match="allowed_entitlements"):
        make(allowed_entitlements={"urn:mace:egi.eu:nogroup"})
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY")
    from jupyterhub.crypto import CryptKeeper

    monkeypatch.setattr(CryptKeeper.instance(), "keys", [])
    with pytest.raises(ValueError, match="JUPYTERHUB_CRYPT_KEY"):
        make()


async def test_vo_membership_allows_and_records_primary_vo():
    auth = make(allowed_vos={"vo.notebooks.egi.eu"}, vo_priority=["vo.other.eu"])
    m = await auth.update_auth_model(model(MEMBER, OTHER))
    assert m["auth_state"]["vos"] == ["vo.notebooks.egi.eu", "vo.other.eu"]
    assert m["auth_state"]["primary_vo"] == "vo.other.eu"
    assert await auth.check_allowed("u@egi.eu", m)
    assert not await auth.check_allowed("u@egi.eu", await auth.update_auth_model(model(OTHER)))
    # only VOs the configuration names become hub groups
    assert await auth.get_user_groups(m["auth_state"]) == {"vo.notebooks.egi.eu"}


async def test_entitlement_patterns_allow_and_make_admins():
    auth = make(
        allowed_entitlements={"vo.notebooks.egi.eu:role=manager"},
        admin_entitlements={MANAGER},
        admin_users={"root@egi.eu"},
    )
    manager = await auth.update_auth_model(model(MANAGER))
    member = await auth.update_auth_model(model(MEMBER))
    assert manager["admin"] is True and await auth.check_allowed("u@egi.eu", manager)
    assert member["admin"] is False and not await auth.check_allowed("u@egi.eu", member)
    # admin_users stay admins without the entitlement
    root = await auth.update_auth_model(model(MEMBER, admin=True, name="root@egi.eu"))
    assert root["admin"] is True


async def test_without_admin_entitlements_admin_is_left_to_the_hub():
    auth = make(allowed_vos={"vo.notebooks.egi.eu"})
    assert (await auth.update_auth_model(model(MANAGER)))["admin"] is None


async def test_upstream_allow_options_still_work():
    auth = make(allowed_users={"friend@egi.eu"})
    assert await auth.check_allowed("friend@egi.eu", await auth.update_auth_model(model()))
    assert await make(allow_all=True).check_allowed("x", await make().update_auth_model(model()))


@pytest.mark.parametrize(
    "claims",
    [
        {"eduperson_entitlement": None},
        {"eduperson_entitlement": 12},
        {"eduperson_entitlement": {"nested": MEMBER}},
        {"eduperson_entitlement": [None, 1, ["x"], "é" * 2000, "urn:x:group:" + "v" * 100_000]},
    ],
)
async def test_hostile_entitlement_claims_are_refused_cleanly(claims):
    auth = make(allowed_vos={"vo.notebooks.egi.eu"})
    hostile = {"name": "u", "admin": None, "auth_state": {"oauth_user": claims}}
    m = await auth.update_auth_model(hostile)
    assert m["auth_state"]["vos"] == []
    assert not await auth.check_allowed("u", m)


async def test_ten_thousand_entitlements_unicode_vo():
    many = [f"urn:mace:egi.eu:group:vo{i}.eu:role=member#aai.egi.eu" for i in range(10_000)]
    many.append("urn:mace:egi.eu:group:vo.ünïcode.eu:role=member#aai.egi.eu")
    auth = make(allowed_vos={"vo.ünïcode.eu"}, max_entitlements=20_000)
    m = await auth.update_auth_model(model(*many))
    assert await auth.check_allowed("u", m)
    assert len(m["auth_state"]["vos"]) == 10_001


def test_username_from_voperson_id_then_sub_and_never_anonymous():
    auth = make(username_fallback_claims=["sub"])  # no fallback unless configured
    assert auth.user_info_to_username({"voperson_id": "abc@egi.eu", "sub": "s"}) == "abc@egi.eu"
    assert auth.user_info_to_username({"sub": "s-123@egi.eu"}) == "s-123@egi.eu"
    for bad in ({}, {"voperson_id": 5}, {"voperson_id": "  ", "sub": ["x"]}, {"sub": None}):
        with pytest.raises(web.HTTPError) as info:
            auth.user_info_to_username(bad)
        assert info.value.status_code == 403
    assert (
        make(username_claim=lambda info: info["email"]).user_info_to_username({"email": "e@x"})
        == "e@x"
    )


class FakeUser:
    """What refresh_user reads of a hub user: its name and stored auth_state."""

    def __init__(self, auth_state):
        self.name = "egi-notebooks-probe"
        self.auth_state = auth_state
        self.spawners: dict = {}

    async def get_auth_state(self):
        return self.auth_state

    async def save_auth_state(self, auth_state):
        self.auth_state = auth_state


@pytest.mark.parametrize("stored", [None, {}], ids=["no-auth-state", "empty-auth-state"])
async def test_identities_without_auth_state_have_nothing_to_refresh(stored):
    # The probe user, service accounts and users created through the API never logged in
    # with the provider: refresh must not refuse them (JupyterHub 5.5 refuses their spawns
    # with "auth has expired" when refresh_user returns False).
    assert await make().refresh_user(FakeUser(stored)) is True


async def test_a_user_whose_tokens_were_dropped_must_log_in_again():
    # after a lost VO or a logout with revocation the tokens are gone but the rest stays
    dropped = {"oauth_user": {"sub": "x"}, "vos": [], "access_token": None}
    assert await make().refresh_user(FakeUser(dropped)) is False
