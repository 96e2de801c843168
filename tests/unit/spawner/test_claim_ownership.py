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


def home_claim_of(cluster, spawner) -> str:
    pod = cluster.k8s.store[("pods", spawner.namespace, spawner.pod_name)]
    mount = next(
        m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/home/jovyan"
    )
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    return volume["persistentVolumeClaim"]["claimName"]


def assert_untouched(cluster, name: str, victim: str) -> None:
    meta = cluster.k8s.store[("persistentvolumeclaims", "hub", name)]["metadata"]
    assert meta["annotations"] == {ann.USERNAME: victim}
    assert ann.USER_SLUG_LABEL not in meta["labels"]


async def test_another_users_claim_at_a_legacy_name_is_not_mounted(cluster, make_spawner, caplog):
    # bob.x's z2jh legacy name (escape scheme) is the plain claim name of user bob-2ex.
    cluster.k8s.put_object(
        "persistentvolumeclaims", claim("claim-bob-2ex", username="bob-2ex"), "hub"
    )
    spawner = make_spawner(name="bob.x", auth_state=BOB_STATE)
    with caplog.at_level(logging.INFO):
        await spawn(spawner)
    # bob.x gets a home of their own at the deterministic name; bob-2ex's is left alone.
    own = f"claim-{user_slug('bob.x')}"
    assert spawner.pvc_name == own == home_claim_of(cluster, spawner)
    assert spawner.get_state()["pvc_name"] == own
    assert claim_names(cluster) == sorted(["claim-bob-2ex", own])
    assert_untouched(cluster, "claim-bob-2ex", "bob-2ex")
    # The operators' log names the claim and both users, and no token.
    logged = [r.getMessage() for r in caplog.records if "claim-bob-2ex" in r.getMessage()]
    assert any("'bob-2ex'" in line and "'bob.x'" in line for line in logged), logged
    for secret in ("AT-bob-1", "IDT-bob-1", "RT-bob-SECRET"):
        assert secret not in caplog.text


async def test_another_users_claim_at_the_home_claim_name_refuses_the_spawn(
    cluster, make_spawner, caplog
):
    # The z2jh claim of alice.smith (escape scheme) sits at claim-alice-2esmith, the
    # deterministic name of user alice-2esmith: it cannot be mounted nor created again.
    from kubespawner.slugs import escape_slug

    name = f"claim-{escape_slug('alice.smith')}"
    assert name == f"claim-{user_slug('alice-2esmith')}"
    cluster.k8s.put_object("persistentvolumeclaims", claim(name, username="alice.smith"), "hub")
    spawner = make_spawner(name="alice-2esmith", auth_state=BOB_STATE)
    with caplog.at_level(logging.INFO), pytest.raises(ClaimOwnershipRefused) as refused:
        await spawn(spawner)
    message = str(refused.value)
    assert "belongs to another user" in message and "contact the operators" in message
    assert refused.value.jupyterhub_message == message  # what the spawn page shows
    assert "alice.smith" not in message  # the other user's name is for the operators only
    # Nothing was mounted, created or left behind; the other user's claim is untouched.
    assert not cluster.k8s.objects("pods") and not cluster.k8s.objects("secrets")
    assert claim_names(cluster) == [name]
    assert_untouched(cluster, name, "alice.smith")
    assert spawner.get_state().get("pvc_name") != name
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(name in e and "'alice.smith'" in e and "'alice-2esmith'" in e for e in errors)
    assert any(f"{ann.USER_SLUG_LABEL}=alice-2esmith" in e for e in errors)  # the remedy
    for secret in ("AT-bob-1", "IDT-bob-1", "RT-bob-SECRET"):
        assert secret not in caplog.text

    # The remedy the log gives: a claim of the user's own, under any name, labelled.
    cluster.k8s.put_object(
        "persistentvolumeclaims",
        claim("home-alice-2esmith", username="alice-2esmith", label="alice-2esmith"),
        "hub",
    )
    await spawn(spawner)
    assert spawner.pvc_name == "home-alice-2esmith" == home_claim_of(cluster, spawner)
    assert_untouched(cluster, name, "alice.smith")


async def test_claim_labelled_for_another_user_is_not_mounted(cluster, make_spawner):
    cluster.k8s.put_object(
        "persistentvolumeclaims", claim("claim-bob-2ex", label=user_slug("bob-2ex")), "hub"
    )
    await spawn(spawner := make_spawner(name="bob.x", auth_state=BOB_STATE))
    assert spawner.pvc_name == f"claim-{user_slug('bob.x')}" == home_claim_of(cluster, spawner)


async def test_annotation_and_label_disagreeing_is_not_this_users(cluster, make_spawner):
    # The annotation names this user but the label another: copied or tampered metadata.
    cluster.k8s.put_object(
        "persistentvolumeclaims",
        claim("claim-bob", username="bob", label=user_slug("mallory")),
        "hub",
    )
    with pytest.raises(ClaimOwnershipRefused, match="belongs to another user"):
        await spawn(make_spawner(name="bob", auth_state=BOB_STATE))
    assert not cluster.k8s.objects("pods")


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
