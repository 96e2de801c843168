"""Accounting records what EGISpawner decided, never what the user put in the spawn request.

A user can send any ``user_options`` with a spawn (the hub keeps them in the server model that
accounting reads). The image and the primary VO accounting records must be the pod's image
(the profile's, after kubespawner's overrides) and the primary VO computed from the user's
entitlements: a forged ``image``, ``vo`` or ``primary_vo`` option changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from egi_notebooks.services.accounting.collector import Collector
from egi_notebooks.spawner import annotations as ann

from .conftest import spawn

PROFILES = [
    {"display_name": "Small", "slug": "small", "default": True},
    {
        "display_name": "GPU",
        "slug": "gpu",
        "vos": ["vo.example.org"],
        "kubespawner_override": {"image": "registry.example.org/gpu:2"},
    },
]
FORGED = {
    "image": "attacker.example/free-gpu:latest",
    "vo": "vo.someone-else.eu",
    "primary_vo": "vo.someone-else.eu",
}
NOW = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())


def server_model(spawner) -> dict:
    """What the hub API shows accounting for this server (admin:server_state)."""
    return {
        "name": spawner.name,
        "started": "2026-03-01T10:00:00Z",
        "state": spawner.get_state(),
        "user_options": dict(spawner.user_options),
    }


def pod_of(cluster, spawner) -> dict:
    return cluster.k8s.store[("pods", spawner.namespace, spawner.pod_name)]


async def test_forged_user_options_do_not_reach_the_accounting_record(cluster, make_spawner):
    alice = make_spawner(profile_list=PROFILES, image="registry.example.org/base:1")
    alice.user_options = {"profile": "gpu", **FORGED}
    await spawn(alice)
    pod = pod_of(cluster, alice)
    assert pod["spec"]["containers"][0]["image"] == "registry.example.org/gpu:2"
    # the user is in no VO the collector could pick by group: only the spawner's record counts
    user = {"name": "alice", "groups": []}
    obs = Collector(hub_id="t").observation(user, server_model(alice), NOW)
    assert (obs.image, obs.primary_vo, obs.flavor) == (
        "registry.example.org/gpu:2", "vo.example.org", "gpu",
    )  # fmt: skip
    annotations = pod["metadata"]["annotations"]
    assert annotations[ann.IMAGE] == "registry.example.org/gpu:2"
    assert annotations[ann.PRIMARY_VO] == "vo.example.org"  # computed from entitlements


async def test_the_pods_image_is_kept_across_a_hub_restart(cluster, make_spawner):
    # a restarted hub loads the state; kubespawner's self.image is the configured default
    # again (profiles are applied at start only), and a token refresh rewrites the state
    alice = make_spawner(profile_list=PROFILES, image="registry.example.org/base:1")
    alice.user_options = {"profile": "gpu", **FORGED}
    await spawn(alice)
    state = alice.get_state()
    restarted = make_spawner(profile_list=PROFILES, image="registry.example.org/base:1")
    restarted.load_state(state)
    await restarted.run_auth_state_hook(await restarted.user.get_auth_state())
    annotations = restarted.get_state()["annotations"]
    assert annotations[ann.IMAGE] == "registry.example.org/gpu:2"
    assert annotations[ann.FLAVOR] == "gpu"


async def test_without_a_primary_vo_a_forged_one_is_not_recorded(cluster, make_spawner):
    no_vo = {"access_token": "AT-carol", "vos": [], "primary_vo": None, "entitlements": []}
    carol = make_spawner(name="carol", auth_state=no_vo)
    carol.user_options = dict(FORGED)
    await spawn(carol)
    assert ann.PRIMARY_VO not in pod_of(cluster, carol)["metadata"]["annotations"]
    obs = Collector(hub_id="t").observation({"name": "carol"}, server_model(carol), NOW)
    assert obs.primary_vo is None
    assert obs.image == pod_of(cluster, carol)["spec"]["containers"][0]["image"]
