"""Users the common path does not cover: no auth_state at all, only named servers."""

from __future__ import annotations

import pytest

from egi_notebooks.spawner import update_user_token_secrets

from .conftest import spawn

GENERIC_OAUTH_STATE = {  # what a plain GenericOAuthenticator stores: no vos, no entitlements
    "access_token": "AT-generic",
    "refresh_token": "RT-generic-SECRET",
    "token_response": {"token_type": "Bearer"},
    "oauth_user": {"sub": "x"},
}


def secret(cluster, name="egi-token-probe"):
    return cluster.k8s.store.get(("secrets", "hub", name))


@pytest.mark.parametrize("hook", [None, "operator"])
async def test_user_without_auth_state_spawns_with_empty_token_secret(cluster, make_spawner, hook):
    # The status service's probe user never logs in: auth_state is None.
    seen = []
    config = {"auth_state_hook": lambda s, state: seen.append(state)} if hook else {}
    probe = make_spawner(name="probe", auth_state=None, vo_volumes=VO, **config)
    url = await spawn(probe)
    assert url.startswith("http://")
    assert secret(cluster)["data"] == {}  # the pod's Secret volume exists, holds no token
    pod = cluster.k8s.store[("pods", "hub", probe.pod_name)]
    assert ann_primary_vo(pod) is None
    assert not [m for m in pod["spec"]["containers"][0]["volumeMounts"] if "vo-" in m["name"]]
    if hook:
        assert seen == [None]  # the operator's hook still ran, with what the hub had
    # a refresh-style update with no tokens keeps working too
    probe.user.spawners[""] = probe
    assert await update_user_token_secrets(probe.user, {}) == 1
    assert secret(cluster)["data"] == {}


async def test_other_authenticators_state_gives_the_token_and_no_vo(cluster, make_spawner):
    user = make_spawner(name="gen", auth_state=GENERIC_OAUTH_STATE, vo_volumes=VO)
    await spawn(user)
    data = secret(cluster, "egi-token-gen")["data"]
    assert set(data) == {"access_token"}
    pod = cluster.k8s.store[("pods", "hub", user.pod_name)]
    assert ann_primary_vo(pod) is None
    assert "RT-generic-SECRET" not in str(cluster.k8s.store)


async def test_deleting_user_with_only_named_servers_deletes_token_secret(cluster, make_spawner):
    a, b = make_spawner(server="a"), make_spawner(server="b")
    await spawn(a)
    await spawn(b)
    await a.stop()
    await b.stop()
    # JupyterHub's user deletion: delete_forever on every (stopped) server of the user.
    await a.delete_forever()
    await b.delete_forever()
    assert secret(cluster, "egi-token-alice") is None
    assert ("persistentvolumeclaims", "hub", "claim-alice") in cluster.k8s.store


async def test_named_server_deletion_while_another_runs_keeps_its_token(cluster, make_spawner):
    a, b = make_spawner(server="a"), make_spawner(server="b")
    await spawn(a)
    await spawn(b)
    await a.stop()
    await a.delete_forever()
    assert secret(cluster, "egi-token-alice") is not None
    await b.stop()
    await b.delete_forever()  # the last server of the user: nothing needs the token now
    assert secret(cluster, "egi-token-alice") is None


VO = {"vo.example.org": {"claim": "vo-ex", "mount_path": "/data/ex"}}


def ann_primary_vo(pod):
    from egi_notebooks.spawner import annotations as ann

    return pod["metadata"].get("annotations", {}).get(ann.PRIMARY_VO)


async def test_slow_secret_write_still_lands_before_the_pod(cluster, make_spawner):
    # The Secret write runs alongside the claim steps; the pod must still wait for it.
    cluster.k8s.inject_fault(verb="replace", plural="secrets", status=None, delay=0.4)
    cluster.k8s.inject_fault(verb="create", plural="secrets", status=None, delay=0.4)
    secret_at_pod_creation = []

    def on_event(kind, plural, obj):
        if plural == "pods" and kind == "ADDED":
            secret_at_pod_creation.append(secret(cluster, "egi-token-alice") is not None)

    cluster.k8s.listeners.append(on_event)
    await spawn(make_spawner())
    assert secret_at_pod_creation == [True]
    assert ("persistentvolumeclaims", "hub", "claim-alice") in cluster.k8s.store
