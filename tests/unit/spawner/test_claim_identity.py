"""A home claim goes to the provider identity it was made for, not to a username.

egi-notebooks-hub 1.0 named hub users after ``preferred_username``, which a Check-in user can
change: mallory could be the 1.0 user ``bob@egi.eu`` (bob's voperson_id), with a home claim
annotated ``hub.jupyter.org/username: bob@egi.eu`` and labelled for that name by
``egi-notebooks migrate-claims``. bob's account after the switch must never mount it.
"""

from __future__ import annotations

import logging

import pytest

from egi_notebooks.identity import IDENTITY_KEY, LEGACY_NAMES_KEY
from egi_notebooks.spawner import annotations as ann
from egi_notebooks.spawner.names import user_slug
from egi_notebooks.spawner.storage import ClaimOwnershipRefused

from .conftest import BOB_STATE, spawn
from .test_claim_ownership import claim, claim_names, home_claim_of

BOB = "bob@egi.eu"
BOB_ID = "sub:5e1b0b"
MALLORY_ID = "sub:4a11a0"


def bound(state: dict, identity: str, names: list[str] | None = None, by: str = "") -> dict:
    """``state`` of an account bound to ``identity``; ``names``: the 1.0 names migrate-users
    recorded (for ``by``, default the same identity)."""
    state = {**state, IDENTITY_KEY: identity}
    if names is not None:
        state[LEGACY_NAMES_KEY] = {"identity": by or identity, "names": names}
    return state


def legacy_claim(name: str, username: str, owner: str | None = None) -> dict:
    """A claim as 1.0 made it, labelled as `egi-notebooks migrate-claims` labels it."""
    made = claim(name, username=username, label=user_slug(username))
    if owner is not None:
        made["metadata"]["annotations"][ann.OWNER_IDENTITY] = owner
    return made


async def test_a_squatters_1_0_claim_is_not_adopted_by_the_user_she_named_it_after(
    cluster, make_spawner, caplog
):
    cluster.k8s.put_object("persistentvolumeclaims", legacy_claim("3f9c2a7d", BOB), "hub")
    spawner = make_spawner(name=BOB, auth_state=bound(BOB_STATE, BOB_ID))
    with caplog.at_level(logging.INFO):
        await spawn(spawner)
    own = f"claim-{user_slug(BOB)}"
    assert home_claim_of(cluster, spawner) == own
    assert claim_names(cluster) == sorted(["3f9c2a7d", own])
    created = cluster.k8s.store[("persistentvolumeclaims", "hub", own)]["metadata"]
    assert created["annotations"][ann.OWNER_IDENTITY] == BOB_ID  # bound at creation
    assert "Not adopting claim hub/3f9c2a7d" in caplog.text and "RT-bob-SECRET" not in caplog.text


async def test_a_record_made_for_another_identity_does_not_adopt(cluster, make_spawner):
    cluster.k8s.put_object("persistentvolumeclaims", legacy_claim("3f9c2a7d", BOB), "hub")
    state = bound(BOB_STATE, BOB_ID, names=[BOB], by=MALLORY_ID)
    spawner = make_spawner(name=BOB, auth_state=state)
    await spawn(spawner)
    assert home_claim_of(cluster, spawner) == f"claim-{user_slug(BOB)}"


async def test_a_claim_recording_another_owner_at_the_home_name_refuses_the_spawn(
    cluster, make_spawner
):
    own = f"claim-{user_slug(BOB)}"
    cluster.k8s.put_object(
        "persistentvolumeclaims", legacy_claim(own, BOB, owner=MALLORY_ID), "hub"
    )
    spawner = make_spawner(name=BOB, auth_state=bound(BOB_STATE, BOB_ID))
    with pytest.raises(ClaimOwnershipRefused, match="contact the operators"):
        await spawn(spawner)
    assert claim_names(cluster) == [own]


async def test_a_migrated_users_1_0_claim_is_adopted_under_its_recorded_name(cluster, make_spawner):
    # alice was renamed from her 1.0 name 'alice'; migrate-users recorded it for her identity
    cluster.k8s.put_object("persistentvolumeclaims", legacy_claim("0a1b2c3d", "alice"), "hub")
    state = bound(BOB_STATE, "sub:a11ce", names=["alice"])
    spawner = make_spawner(name="alice@egi.eu", auth_state=state)
    await spawn(spawner)
    assert home_claim_of(cluster, spawner) == "0a1b2c3d"
    assert spawner.get_state()["pvc_name"] == "0a1b2c3d"


async def test_a_claim_recording_the_accounts_identity_is_adopted(cluster, make_spawner):
    cluster.k8s.put_object(
        "persistentvolumeclaims", legacy_claim("made-by-egispawner", BOB, owner=BOB_ID), "hub"
    )
    spawner = make_spawner(name=BOB, auth_state=bound(BOB_STATE, BOB_ID))
    await spawn(spawner)
    assert home_claim_of(cluster, spawner) == "made-by-egispawner"


async def test_operators_may_trust_usernames_of_legacy_claims(cluster, make_spawner):
    cluster.k8s.put_object("persistentvolumeclaims", legacy_claim("z2jh-claim", BOB), "hub")
    spawner = make_spawner(
        name=BOB, auth_state=bound(BOB_STATE, BOB_ID), adopt_unbound_legacy_claims=True
    )
    await spawn(spawner)
    assert home_claim_of(cluster, spawner) == "z2jh-claim"
