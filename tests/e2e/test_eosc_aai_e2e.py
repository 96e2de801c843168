"""The EOSC AAI preset end to end: the certified provider releases EOSC EU Node entitlements
(``urn:geant:eosc-federation.eu:group:pp-...`` personal and ``gp-...`` group projects in the
``entitlements`` claim, no authority), the hub runs ``eosc_aai(c, issuer=...)``, and the
personal project becomes the primary VO that the spawner annotates the pod with (what
accounting reads). Kubernetes is the emulator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from egi_notebooks.spawner import annotations as ann
from tests.harness.egi_hub import EGIHub, kube_spawner_config, on_cluster
from tests.harness.login import login
from tests.harness.provider import CERTIFIED

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

NS = "egi"
NAMESPACE = "urn:geant:eosc-federation.eu"
PERSONAL = "pp-0190356a-ac97-db53-21c0-df7cd31a47c4"
GROUP_PROJECT = "gp-01903568-c385-49ba-0356-1b4ac60a90ec"
OTHER_PROJECT = "gp-0190356b-25a5-4f61-f926-38f9e0cd541a"


def eosc_user(login_name: str, entitlements: list[str]) -> dict:
    return {
        "password": login_name,
        "claims": {
            "voperson_id": f"{login_name}@eosc.example",
            "name": login_name.capitalize(),
            "email": f"{login_name}@example.org",
            "entitlements": entitlements,
        },
    }


USERS = {
    # the group project first: the primary VO must still be the personal project
    "jane": eosc_user(
        "jane",
        [
            f"{NAMESPACE}:group:{GROUP_PROJECT}:role=owner",
            f"{NAMESPACE}:group:{PERSONAL}",
        ],
    ),
    # the VO of the group project, but in Check-in's namespace: does not count on EOSC
    "mallory": eosc_user(
        "mallory",
        [
            f"urn:mace:egi.eu:group:{GROUP_PROJECT}:role=member#aai.egi.eu",
            f"{NAMESPACE}:group:{OTHER_PROJECT}:role=member",
        ],
    ),
}

HUB_CONFIG = kube_spawner_config(NS)


@contextlib.contextmanager
def eosc_hub(workdir) -> Iterator[EGIHub]:
    egi = EGIHub(workdir / "hub", HUB_CONFIG, CERTIFIED, users=USERS)
    # the preset needs the issuer, known once the provider runs: appended by authenticator_config
    base = egi.authenticator_config

    def with_preset() -> str:
        return (
            base()
            + f"""
from egi_notebooks.presets import eosc_aai
eosc_aai(c, issuer={egi.provider.issuer!r})
c.EGICheckinAuthenticator.allowed_vos = {{{GROUP_PROJECT!r}}}
c.EGICheckinAuthenticator.admin_entitlements = set()
# the API test logs in with the hub client's own token (what jwt_login refuses by default)
c.EGICheckinAuthenticator.jwt_login_accept_hub_client_tokens = True
"""
        )

    egi.authenticator_config = with_preset
    with on_cluster(egi, workdir / "k8s"):
        yield egi


@pytest.fixture(scope="module")
def egi(tmp_path_factory):
    with eosc_hub(tmp_path_factory.mktemp("eosc")) as hub:
        yield hub


def pod_of(egi: EGIHub, user: str) -> dict:
    for p in egi.k8s.list("pods", NS):
        if (p["metadata"].get("annotations") or {}).get(ann.USERNAME) == user:
            return p
    raise AssertionError(f"no pod for {user}")


def test_personal_project_is_the_primary_vo_of_the_pod(egi):
    assert login(egi.hub.url, "jane").ok
    user = "jane@eosc.example"
    state = egi.auth_state(user)
    assert state["primary_vo"] == PERSONAL
    assert state["vos"] == [GROUP_PROJECT, PERSONAL]
    assert state["entitlements"] == sorted(
        [f"{NAMESPACE}:group:{GROUP_PROJECT}:role=owner", f"{NAMESPACE}:group:{PERSONAL}"]
    )
    # the group project named in allowed_vos is a hub group; the personal project is not
    assert egi.user_model(user)["groups"] == [GROUP_PROJECT]
    r = egi.hub.api("POST", f"/users/{user}/server")
    assert r.status_code in (201, 202), r.text
    egi.hub.wait_for_server(user, timeout=120)
    annotations = pod_of(egi, user)["metadata"]["annotations"]
    assert annotations[ann.PRIMARY_VO] == PERSONAL
    r = egi.hub.api("DELETE", f"/users/{user}/server")
    assert r.status_code in (202, 204), r.text
    egi.hub.wait_for_server(user, ready=False, timeout=120)


def test_only_eosc_entitlements_authorize(egi):
    result = login(egi.hub.url, "mallory")
    assert not result.ok
    assert egi.hub.api("GET", "/users/mallory@eosc.example").status_code == 404


def test_api_access_with_an_eosc_access_token(egi):
    tokens = egi.provider.login_tokens(
        "jane", scope="openid profile email offline_access entitlements voperson_id"
    )
    r = httpx.get(
        f"{egi.hub.url}/hub/jwt_login",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["user"]["name"] == "jane@eosc.example"
    assert egi.auth_state("jane@eosc.example")["primary_vo"] == PERSONAL
