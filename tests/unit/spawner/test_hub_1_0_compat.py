"""What egi-notebooks-hub 1.0 left behind keeps working or is cleaned up: profiles with
``vo_claims`` and the ``access-token-{userid}`` token Secrets."""

from __future__ import annotations

import logging

import pytest

from egi_notebooks.spawner import profiles
from egi_notebooks.spawner.profiles import Membership, filter_profiles, split_vo_claims

from .conftest import ALICE_STATE, spawn

MEMBER = "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu"
ADMIN = "urn:mace:egi.eu:group:vo.example.org:role=admin#aai.egi.eu"
# As 1.0 deployments wrote them: hub group names, i.e. the raw entitlement URNs.
PROFILES_1_0 = [
    {"display_name": "Default", "slug": "default"},
    {"display_name": "Members", "slug": "members", "vo_claims": [MEMBER]},
    {"display_name": "Admins", "slug": "admins", "vo_claims": [ADMIN]},
    {"display_name": "Other VO", "slug": "other", "vo_claims": ["vo.other.eu"]},
    {"display_name": "Nobody", "slug": "nobody", "vo_claims": ["vo.nobody.eu"]},
    {"display_name": "Anyone", "slug": "anyone", "vo_claims": []},
]


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def recorder():
    profiles._warned_legacy.clear()
    logger = logging.getLogger("test.vo_claims")
    handler = Recorder()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)
    profiles._warned_legacy.clear()


def test_vo_claims_split_urns_to_entitlements_names_to_vos():
    assert split_vo_claims([MEMBER, "vo.other.eu", " vo.x.eu "]) == {
        "entitlements": [MEMBER],
        "vos": ["vo.other.eu", " vo.x.eu "],
    }
    assert split_vo_claims(MEMBER) == {"entitlements": [MEMBER]}
    assert split_vo_claims([]) == {}


def test_vo_claims_profiles_filtered_like_1_0(recorder):
    logger, _ = recorder
    for profile in PROFILES_1_0:
        profiles.profile_patterns(profile, logger)
    offered = filter_profiles(PROFILES_1_0, Membership.from_auth_state(ALICE_STATE))
    # the member URN matches exactly (role and authority too); the admin URN does not;
    # a bare VO name matches the VO
    assert [p["slug"] for p in offered] == ["default", "members", "other", "anyone"]
    assert [p["slug"] for p in filter_profiles(PROFILES_1_0, Membership())] == [
        "default",
        "anyone",
    ]


def test_vo_claims_warned_once_per_profile_with_the_replacement(recorder):
    logger, handler = recorder
    for _ in range(3):  # each form render and spawn reads the profile list again
        for profile in PROFILES_1_0:
            profiles.profile_patterns(profile, logger)
    assert len(handler.messages) == 4  # members, admins, other, nobody: once each
    members = next(m for m in handler.messages if "'members'" in m)
    assert f"entitlements: [{MEMBER!r}]" in members and "'vo_claims'" in members
    other = next(m for m in handler.messages if "'other'" in m)
    assert "vos: ['vo.other.eu']" in other


def test_vo_claims_merge_with_new_keys_and_bad_values_name_the_profile(recorder):
    logger, _ = recorder
    merged = {"slug": "both", "vos": ["vo.a.eu"], "vo_claims": [MEMBER]}
    assert [p.source for p in profiles.profile_patterns(merged, logger)] == ["vo.a.eu", MEMBER]
    with pytest.raises(ValueError, match=r"'bad', vos \(from vo_claims\)"):
        profiles.profile_patterns({"slug": "bad", "vo_claims": ["a=b"]}, logger)


async def test_spawner_offers_and_refuses_1_0_profiles(cluster, make_spawner, caplog):
    profiles._warned_legacy.clear()
    alice = make_spawner(profile_list=PROFILES_1_0)
    await alice.run_auth_state_hook(ALICE_STATE)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            form = await alice.get_options_form()
    assert 'value="members"' in form and 'value="other"' in form
    assert 'value="admins"' not in form and 'value="nobody"' not in form
    warnings = [r for r in caplog.records if "vo_claims" in r.getMessage()]
    assert len(warnings) == 4
    alice.user_options = {"profile": "admins"}
    with pytest.raises(Exception, match=f"it requires {ADMIN}"):
        await alice.start()
    profiles._warned_legacy.clear()


# ----- the 1.0 token Secret -----------------------------------------------------------------


def legacy_secret(cluster, user_id: int, ns: str = "hub") -> str:
    name = f"access-token-{user_id}"
    data = {"access_token": "T0xELUFU"}  # base64 of an old access token
    cluster.k8s.put_object("secrets", {"metadata": {"name": name}, "data": data}, ns)
    return name


async def test_first_spawn_deletes_1_0_secret_once(cluster, make_spawner):
    spawner = make_spawner()
    old = legacy_secret(cluster, spawner.user.id)
    await spawn(spawner)
    assert ("secrets", "hub", old) not in cluster.k8s.store
    assert ("secrets", "hub", "egi-token-alice") in cluster.k8s.store
    await spawner.stop()
    state = spawner.get_state()
    assert state["legacy_token_secrets_deleted"] is True
    # Later spawns (after a hub restart too) make no extra call for it.
    again = make_spawner()
    again.load_state(state)
    before = len(cluster.k8s.calls)
    await spawn(again)
    assert [(c.verb, c.plural) for c in cluster.k8s.calls[before:]] == [
        ("replace", "secrets"),
        ("create", "pods"),
    ]


async def test_stop_of_a_server_started_before_the_switch_deletes_1_0_secret(cluster, make_spawner):
    # The pod was started before the upgrade (no EGISpawner state about old Secrets).
    before_switch = make_spawner(legacy_token_secret_name_templates=[])
    old = legacy_secret(cluster, before_switch.user.id)
    await spawn(before_switch)
    assert ("secrets", "hub", old) in cluster.k8s.store
    state = before_switch.get_state()
    del state["legacy_token_secrets_deleted"]
    after_switch = make_spawner()
    after_switch.load_state(state)
    await after_switch.stop()
    assert ("secrets", "hub", old) not in cluster.k8s.store


async def test_user_deletion_deletes_1_0_secret(cluster, make_spawner):
    never_spawned = make_spawner(name="carol")
    old = legacy_secret(cluster, never_spawned.user.id)
    await never_spawned.delete_forever()
    assert ("secrets", "hub", old) not in cluster.k8s.store


async def test_old_template_configured_reuses_the_1_0_secret(cluster, make_spawner):
    spawner = make_spawner(token_secret_name_template="access-token-{userid}")
    old = legacy_secret(cluster, spawner.user.id)
    await spawn(spawner)
    assert cluster.k8s.count("delete", "secrets") == 0
    secret = cluster.k8s.store[("secrets", "hub", old)]
    assert set(secret["data"]) == {"access_token", "id_token"}  # rewritten in place


async def test_failed_deletion_does_not_fail_the_spawn_and_is_retried(cluster, make_spawner):
    spawner = make_spawner()
    old = legacy_secret(cluster, spawner.user.id)
    cluster.k8s.inject_fault(verb="delete", plural="secrets", status=500, times=None)
    await spawn(spawner)
    assert cluster.k8s.objects("pods")
    assert "legacy_token_secrets_deleted" not in spawner.get_state()
    cluster.k8s.faults.clear()
    await spawner.stop()
    assert ("secrets", "hub", old) not in cluster.k8s.store


async def test_renamed_user_leaves_no_secret_under_the_old_name(cluster, make_spawner):
    spawner = make_spawner(name="alice")
    await spawn(spawner)
    await spawner.stop()
    spawner.clear_state()
    spawner.user.name = "alice-cuid@egi.eu"  # the hub's rename keeps the Spawner objects
    await spawn(spawner)
    names = {o["metadata"]["name"] for o in cluster.k8s.objects("secrets")}
    assert names == {spawner.token_secret_name}
    assert spawner.token_secret_name != "egi-token-alice"
