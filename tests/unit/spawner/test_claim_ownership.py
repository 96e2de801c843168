"""A home claim found by name is mounted only when its metadata names the spawning user.

zero-to-jupyterhub's ``claim-{username}`` in kubespawner's "escape" scheme turns ``.`` into
``-2e``: the escaped claim of ``alice.smith`` is ``claim-alice-2esmith``, which is also the
as-is name (and EGISpawner's deterministic name) of user ``alice-2esmith``.
"""

from __future__ import annotations

import logging

import pytest

from egi_notebooks.spawner import annotations as ann
from egi_notebooks.spawner.names import user_slug
from egi_notebooks.spawner.storage import ClaimOwnershipRefused

from .conftest import BOB_STATE, spawn


def claim(name: str, *, username: str | None = None, label: str | None = None) -> dict:
    meta: dict = {"name": name, "labels": {"component": "singleuser-storage"}}
    if username is not None:
        meta["annotations"] = {ann.USERNAME: username}
    if label is not None:
        meta["labels"][ann.USER_SLUG_LABEL] = label
    return {"metadata": meta}


def claim_names(cluster) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cluster.k8s.objects("persistentvolumeclaims"))


@pytest.mark.parametrize(
    ("victim", "spawning"),
    [("bob-2ex", "bob.x"), ("alice.smith", "alice-2esmith")],
)
async def test_escaped_legacy_name_of_another_user_is_refused(
    cluster, make_spawner, caplog, victim, spawning
):
    from kubespawner.slugs import escape_slug

    name = f"claim-{escape_slug(victim) if '.' in victim else victim}"
    cluster.k8s.put_object("persistentvolumeclaims", claim(name, username=victim), "hub")
    spawner = make_spawner(name=spawning, auth_state=BOB_STATE)
    with caplog.at_level(logging.INFO), pytest.raises(ClaimOwnershipRefused) as refused:
        await spawn(spawner)
    message = str(refused.value)
    assert "belongs to another user" in message and "contact the operators" in message
    assert refused.value.jupyterhub_message == message
    assert victim not in message  # the other user's name is for the operators' log only
    # Nothing was mounted, created or left behind; the other user's claim is untouched.
    assert not cluster.k8s.objects("pods") and not cluster.k8s.objects("secrets")
    assert claim_names(cluster) == [name]
    assert cluster.k8s.store[("persistentvolumeclaims", "hub", name)]["metadata"][
        "annotations"
    ] == {ann.USERNAME: victim}
    assert spawner.get_state().get("pvc_name") != name
    # The operators' log names the claim and both users, and no token.
    logged = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert any(victim in line and spawning in line for line in logged), logged
    text = caplog.text
    for secret in ("AT-bob-1", "IDT-bob-1", "RT-bob-SECRET"):
        assert secret not in text


async def test_claim_labelled_for_another_user_is_refused(cluster, make_spawner):
    cluster.k8s.put_object(
        "persistentvolumeclaims", claim("claim-bob-2ex", label=user_slug("bob-2ex")), "hub"
    )
    with pytest.raises(ClaimOwnershipRefused, match="belongs to another user"):
        await spawn(make_spawner(name="bob.x", auth_state=BOB_STATE))
    assert not cluster.k8s.objects("pods")


async def test_annotation_and_label_disagreeing_is_refused(cluster, make_spawner):
    # The annotation names this user but the label another: metadata was tampered with or
    # copied; mounting it could hand someone else's files over.
    cluster.k8s.put_object(
        "persistentvolumeclaims",
        claim("claim-bob-2ex", username="bob.x", label=user_slug("bob-2ex")),
        "hub",
    )
    with pytest.raises(ClaimOwnershipRefused, match="belongs to another user"):
        await spawn(make_spawner(name="bob.x", auth_state=BOB_STATE))


async def test_claim_without_owner_metadata_is_refused_with_operator_hint(
    cluster, make_spawner, caplog
):
    cluster.k8s.put_object("persistentvolumeclaims", {"metadata": {"name": "claim-erin"}}, "hub")
    with caplog.at_level(logging.INFO), pytest.raises(ClaimOwnershipRefused) as refused:
        await spawn(make_spawner(name="erin", auth_state=BOB_STATE))
    assert "contact the operators" in str(refused.value)
    assert not cluster.k8s.objects("pods")
    assert claim_names(cluster) == ["claim-erin"]
    logged = " ".join(r.getMessage() for r in caplog.records if "claim-erin" in r.getMessage())
    assert "erin" in logged and "egi-notebooks migrate-claims" in logged
    assert ann.USERNAME in logged  # says what to add


@pytest.mark.parametrize("username", ["alice", "Bob.Smith@egi.eu", "bob.x"])
async def test_annotated_legacy_claim_of_this_user_is_adopted(cluster, make_spawner, username):
    from kubespawner.slugs import escape_slug

    legacy = f"claim-{escape_slug(username)}"
    cluster.k8s.put_object("persistentvolumeclaims", claim(legacy, username=username), "hub")
    spawner = make_spawner(name=username, auth_state=BOB_STATE)
    await spawn(spawner)
    assert spawner.pvc_name == legacy
    assert claim_names(cluster) == [legacy]


async def test_claim_labelled_for_this_user_is_adopted(cluster, make_spawner):
    cluster.k8s.put_object(
        "persistentvolumeclaims", claim("claim-bob-2ex", label=user_slug("bob.x")), "hub"
    )
    spawner = make_spawner(name="bob.x", auth_state=BOB_STATE)
    await spawn(spawner)
    assert spawner.pvc_name == "claim-bob-2ex"


async def test_egispawner_own_claim_passes_after_hub_database_loss(cluster, make_spawner):
    await spawn(first := make_spawner(name="alice-2esmith", auth_state=BOB_STATE))
    await first.stop()
    fresh = make_spawner(name="alice-2esmith", auth_state=BOB_STATE)  # no state
    await spawn(fresh)
    assert fresh.pvc_name == "claim-alice-2esmith"
    assert claim_names(cluster) == ["claim-alice-2esmith"]


async def test_another_users_claim_is_not_adopted_by_the_legacy_scan(cluster, make_spawner):
    # The scan matches the annotation; a label naming someone else still wins no claim.
    cluster.k8s.put_object(
        "persistentvolumeclaims",
        claim("deadbeef", username="dave", label=user_slug("mallory")),
        "hub",
    )
    spawner = make_spawner(name="dave", auth_state=BOB_STATE, legacy_claim_scan=True)
    await spawn(spawner)
    assert spawner.pvc_name == "claim-dave"
    assert claim_names(cluster) == ["claim-dave", "deadbeef"]
