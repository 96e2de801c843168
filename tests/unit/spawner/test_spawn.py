"""EGISpawner against the Kubernetes API emulator: what a user and an operator notice."""

from __future__ import annotations

import base64
import json

import pytest

from egi_notebooks.spawner import annotations as ann
from egi_notebooks.spawner import update_user_token_secrets
from egi_notebooks.spawner.storage import label_legacy_claims

from .conftest import ALICE_STATE, BOB_STATE, spawn


def secret_data(cluster, name, ns="hub"):
    secret = cluster.k8s.store[("secrets", ns, name)]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def pod_of(cluster, spawner):
    return cluster.k8s.store[("pods", spawner.namespace, spawner.pod_name)]


async def test_spawn_creates_claim_and_secret_before_pod(cluster, make_spawner):
    spawner = make_spawner()
    url = await spawn(spawner)
    assert url == "http://127.0.0.1:8888"
    writes = [(c.verb, c.plural) for c in cluster.k8s.calls if c.verb in ("create", "replace")]
    assert writes.index(("create", "persistentvolumeclaims")) < writes.index(("create", "pods"))
    assert writes.index(("create", "secrets")) < writes.index(("create", "pods"))

    pod = pod_of(cluster, spawner)
    container = pod["spec"]["containers"][0]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    home = mounts["/home/jovyan"]
    assert volumes[home["name"]]["persistentVolumeClaim"]["claimName"] == "claim-alice"
    token = mounts["/var/run/secrets/egi.eu/"]
    assert token["readOnly"] is True
    assert volumes[token["name"]]["secret"]["secretName"] == "egi-token-alice"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EGI_ACCESS_TOKEN_FILE"] == "/var/run/secrets/egi.eu/access_token"
    # No token (and certainly not the refresh token) anywhere in the pod.
    text = json.dumps(pod)
    for value in ("AT-alice-1", "IDT-alice-1", "RT-alice-SECRET"):
        assert value not in text
    # Secret: access and id token only.
    assert secret_data(cluster, "egi-token-alice") == {
        "access_token": "AT-alice-1",
        "id_token": "IDT-alice-1",
    }
    # Accounting contract and the seed's defaults.
    meta = pod["metadata"]
    assert meta["annotations"][ann.PRIMARY_VO] == "vo.example.org"
    assert meta["annotations"][ann.USERNAME] == "alice"
    # ... also in the server state the hub API shows accounting (no auth_state needed),
    # and kept across a hub restart before any auth_state is loaded again
    state = spawner.get_state()
    assert state["annotations"][ann.PRIMARY_VO] == "vo.example.org"
    restarted = make_spawner()
    restarted.load_state(state)
    assert restarted.get_state()["annotations"] == state["annotations"]
    assert meta["labels"]["hub.jupyter.org/username"] == "alice"
    resources = container["resources"]
    # jupyterhub's ByteSpecification reads "1G" as 1024**3 bytes.
    assert resources["limits"] == {"memory": 1024**3, "cpu": 2.0}
    assert resources["requests"] == {"memory": 512 * 1024**2, "cpu": 0.02}
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/lab"
    claim = cluster.k8s.store[("persistentvolumeclaims", "hub", "claim-alice")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


async def test_steady_state_respawn_pod_create_and_one_secret_write(cluster, make_spawner):
    spawner = make_spawner()
    await spawn(spawner)
    await spawner.stop()
    state = spawner.get_state()
    assert state["pvc_name"] == "claim-alice"
    # A later spawn (new Spawner object from the stored state, as after a hub restart).
    respawner = make_spawner()
    respawner.load_state(state)
    before = len(cluster.k8s.calls)
    await spawn(respawner)
    calls = [(c.verb, c.plural) for c in cluster.k8s.calls[before:]]
    assert calls == [("replace", "secrets"), ("create", "pods")]
    assert [o["metadata"]["name"] for o in cluster.k8s.objects("persistentvolumeclaims")] == [
        "claim-alice"
    ]


async def test_hub_database_loss_finds_same_claim_by_name(cluster, make_spawner):
    await spawn(spawner := make_spawner())
    await spawner.stop()
    fresh = make_spawner()  # no state at all
    before = len(cluster.k8s.calls)
    await spawn(fresh)
    assert fresh.pvc_name == "claim-alice"
    assert not [c for c in cluster.k8s.calls[before:] if c.verb == "list"]
    assert len(cluster.k8s.objects("persistentvolumeclaims")) == 1


@pytest.mark.parametrize("username", ["alice", "Bob.Smith@egi.eu"])
async def test_adopts_zero_to_jupyterhub_claim(cluster, make_spawner, username):
    from kubespawner.slugs import escape_slug

    legacy = f"claim-{escape_slug(username)}"
    # kubespawner annotates every claim it creates with the username.
    meta = {"name": legacy, "annotations": {ann.USERNAME: username}}
    cluster.k8s.put_object("persistentvolumeclaims", {"metadata": meta}, "hub")
    spawner = make_spawner(name=username, pvc_name_template="claim-{user_slug}-new")
    await spawn(spawner)
    assert spawner.pvc_name == legacy
    assert len(cluster.k8s.objects("persistentvolumeclaims")) == 1
    assert spawner.get_state()["pvc_name"] == legacy


async def test_adopts_old_egi_hub_claim_after_one_labelling_pass(cluster, make_spawner):
    old = {
        "metadata": {
            "name": "0c1f3e2d9a8b4c7d",
            "labels": {"component": "singleuser-storage"},
            "annotations": {"hub.jupyter.org/username": "carol@egi.eu"},
        }
    }
    cluster.k8s.put_object("persistentvolumeclaims", old, "hub")
    for i in range(30):  # other users' claims
        other = {
            "metadata": {
                "name": f"x{i}",
                "labels": {"component": "singleuser-storage"},
                "annotations": {"hub.jupyter.org/username": f"user{i}"},
            }
        }
        cluster.k8s.put_object("persistentvolumeclaims", other, "hub")
    spawner = make_spawner(name="carol@egi.eu")
    assert len((await label_legacy_claims(spawner.api, "hub", page_size=7)).labelled) == 31
    before = len(cluster.k8s.calls)
    await spawn(spawner)
    assert spawner.pvc_name == "0c1f3e2d9a8b4c7d"
    lists = [c for c in cluster.k8s.calls[before:] if c.verb == "list" and c.plural != "pods"]
    lists = [c for c in lists if c.plural != "events"]
    assert [c.params["labelSelector"] for c in lists] == [
        f"{ann.USER_SLUG_LABEL}={spawner._labels()[ann.USER_SLUG_LABEL]}"
    ]


async def test_legacy_scan_option_finds_unlabelled_claim(cluster, make_spawner):
    old = {
        "metadata": {
            "name": "deadbeef",
            "labels": {"component": "singleuser-storage"},
            "annotations": {"hub.jupyter.org/username": "dave"},
        }
    }
    cluster.k8s.put_object("persistentvolumeclaims", old, "hub")
    await spawn(spawner := make_spawner(name="dave", legacy_claim_scan=True))
    assert spawner.pvc_name == "deadbeef"


async def test_named_servers_share_home_claim_unless_per_server(cluster, make_spawner):
    await spawn(make_spawner(server="gpu"))
    assert [o["metadata"]["name"] for o in cluster.k8s.objects("persistentvolumeclaims")] == [
        "claim-alice"
    ]
    own = make_spawner(server="big", home_claim_per_server=True)
    await spawn(own)
    assert own.pvc_name.startswith("claim-alice--big---")


async def test_user_deletion_removes_secret_keeps_claims(cluster, make_spawner):
    vo = {"vo.example.org": {"claim": "vo-data", "mount_path": "/data/vo"}}
    spawner = make_spawner(vo_volumes=vo)
    await spawn(spawner)
    await spawner.stop()
    await spawner.delete_forever()
    assert ("secrets", "hub", "egi-token-alice") not in cluster.k8s.store
    assert ("persistentvolumeclaims", "hub", "claim-alice") in cluster.k8s.store


async def test_named_server_deletion_never_deletes_shared_claim(cluster, make_spawner):
    named = make_spawner(server="gpu", delete_pvc=True)
    await spawn(named)
    await spawn(make_spawner(server="running"))
    await named.stop()
    await named.delete_forever()
    assert ("persistentvolumeclaims", "hub", "claim-alice") in cluster.k8s.store
    # the user's other server still runs and reads its token from the shared Secret
    assert ("secrets", "hub", "egi-token-alice") in cluster.k8s.store
    default = make_spawner(delete_pvc=True)
    await default.delete_forever()  # opted in: the user's own home claim goes
    assert ("persistentvolumeclaims", "hub", "claim-alice") not in cluster.k8s.store


async def test_vo_volumes_for_members_only_and_write_by_role(cluster, make_spawner):
    vo = {
        "vo.example.org": {"claim": "vo-ex", "mount_path": "/data/ex", "write_roles": ["manager"]},
        "vo.other.eu": {"claim": "vo-other", "mount_path": "/data/other", "write_roles": ["x"]},
        "vo.secret.org": {"claim": "vo-secret", "mount_path": "/data/secret"},
    }
    alice = make_spawner(vo_volumes=vo)
    await spawn(alice)
    bob = make_spawner(name="bob", auth_state=BOB_STATE, vo_volumes=vo)
    await spawn(bob)

    def mounts(spawner):
        container = pod_of(cluster, spawner)["spec"]["containers"][0]
        return {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]}

    a, b = mounts(alice), mounts(bob)
    assert a["/data/ex"] is False and a["/data/other"] is True and "/data/secret" not in a
    assert "/data/ex" not in b and b["/data/other"] is True and "/data/secret" not in b


PROFILES = [
    {"display_name": "Small", "slug": "small", "default": True},
    {
        "display_name": "GPU",
        "slug": "gpu",
        "vos": ["vo.example.org"],
        "kubespawner_override": {"mem_limit": "4G"},
    },
    {"display_name": "Secret", "slug": "secret", "entitlements": ["vo.secret.org:role=member"]},
]


async def test_profiles_filtered_and_forbidden_refused(cluster, make_spawner):
    alice = make_spawner(profile_list=PROFILES)
    await alice.run_auth_state_hook(ALICE_STATE)
    form = await alice.get_options_form()
    assert 'value="gpu"' in form and 'value="secret"' not in form

    alice.user_options = {"profile": "secret"}
    with pytest.raises(Exception) as refused:
        await alice.start()
    assert str(refused.value) == (
        "Profile 'secret' is not available to you: it requires vo.secret.org:role=member."
    )
    assert not cluster.k8s.objects("pods") and not cluster.k8s.objects("secrets")

    alice.user_options = {"profile": "gpu"}
    await alice.start()
    pod = pod_of(cluster, alice)
    assert pod["metadata"]["annotations"][ann.FLAVOR] == "gpu"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == 4 * 1024**3


async def test_callable_profile_list_is_filtered_too(cluster, make_spawner):
    bob = make_spawner(name="bob", auth_state=BOB_STATE, profile_list=lambda s: PROFILES)
    await bob.run_auth_state_hook(BOB_STATE)
    form = await bob.get_options_form()
    assert 'value="small"' in form and 'value="gpu"' not in form
    bob.user_options = {"profile": "gpu"}
    with pytest.raises(Exception, match="requires vo.example.org"):
        await bob.start()


async def test_kubespawner_renders_the_form_from_a_vo_filtered_profile_list(cluster, make_spawner):
    from kubespawner import KubeSpawner

    from egi_notebooks.spawner import EGISpawner

    # no private form method of kubespawner's is replaced: it calls the callable
    for name in ("_options_form_default", "_render_options_form", "_get_initialized_profile_list"):
        assert getattr(EGISpawner, name) is getattr(KubeSpawner, name), name
    by_slug = {p["slug"]: p for p in PROFILES}
    for configured in (PROFILES, by_slug):
        # no auth_state hook run yet: the membership is read from the user's auth_state
        bob = make_spawner(name="bob", auth_state=BOB_STATE, profile_list=configured)
        assert callable(bob.profile_list) and bob.profile_list.configured == configured
        assert bob.options_form.__func__ is KubeSpawner._render_options_form_dynamically
        assert [p["slug"] for p in await bob.profile_list(bob)] == ["small"]
        form = await bob.get_options_form()
        assert 'value="small"' in form and 'value="gpu"' not in form
        assert 'value="secret"' not in form
    alice = make_spawner(profile_list=by_slug)
    assert [p["slug"] for p in await alice.profile_list(alice)] == ["gpu", "small"]


async def test_a_profile_list_set_later_is_filtered(cluster, make_spawner):
    bob = make_spawner(name="bob", auth_state=BOB_STATE)
    bob.profile_list = PROFILES
    assert [p["slug"] for p in await bob.profile_list(bob)] == ["small"]
    bob.user_options = {"profile": "nope"}
    with pytest.raises(Exception, match="No such profile: 'nope'"):
        await bob.start()


async def test_operator_hooks_still_called(cluster, make_spawner):
    seen = {}

    def auth_state_hook(spawner, auth_state):
        seen["auth_state"] = auth_state["primary_vo"]

    def modify_pod_hook(spawner, pod):
        seen["volumes"] = [v.name for v in pod.spec.volumes]
        pod.metadata.labels["operator"] = "was-here"
        return pod

    spawner = make_spawner(
        auth_state_hook=auth_state_hook,
        modify_pod_hook=modify_pod_hook,
        extra_annotations={"operator/note": "kept"},
        volumes=[{"name": "scratch", "emptyDir": {}}],
        volume_mounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    await spawn(spawner)
    pod = pod_of(cluster, spawner)
    assert seen["auth_state"] == "vo.example.org"
    assert {"scratch", "home", "egi-token"} <= set(seen["volumes"])
    assert pod["metadata"]["labels"]["operator"] == "was-here"
    assert pod["metadata"]["annotations"]["operator/note"] == "kept"


async def test_refreshed_tokens_reach_running_servers_secret(cluster, make_spawner):
    spawner = make_spawner()
    await spawn(spawner)
    refreshed = dict(ALICE_STATE, access_token="AT-alice-2", refresh_token="RT-alice-2")
    spawner.user.spawners[""] = spawner
    assert await update_user_token_secrets(spawner.user, refreshed) == 1
    assert secret_data(cluster, "egi-token-alice")["access_token"] == "AT-alice-2"
    assert "RT-alice-2" not in json.dumps(cluster.k8s.store[("secrets", "hub", "egi-token-alice")])
