"""EGISpawner end to end: real hub + CHP, real OIDC provider, emulated Kubernetes.

The hub runs ``c.JupyterHub.spawner_class = "egi-kubespawner"`` with ``KUBECONFIG`` pointing
at the emulator process, whose kubelet runs each pod's ``jupyterhub-singleuser`` as a local
process on its own loopback address, with the pod's Secret volume materialised as files
(kept in sync when the Secret changes). One hub serves the whole module: the users do not
share anything but the hub.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from egi_notebooks.spawner import annotations as ann
from tests.harness.egi_hub import EGIHub, kube_spawner_config, on_cluster
from tests.harness.login import login
from tests.harness.provider import CERTIFIED
from tests.harness.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

NS = "egi"
TOKEN_LIFETIME = 12  # seconds: the background refresh renews at half of it
HUB_CONFIG = (
    kube_spawner_config(NS, timeout=60)
    + """
c.JupyterHub.allow_named_servers = True
c.EGISpawner.vo_volumes = {
    "vo.notebooks.egi.eu": {"claim": "vo-notebooks-data", "mount_path": "/data/notebooks"},
}
c.EGISpawner.profile_list = [
    {"display_name": "Standard", "slug": "standard", "default": True},
    {"display_name": "Large (vo.notebooks.egi.eu)", "slug": "large",
      "vos": ["vo.notebooks.egi.eu"], "kubespawner_override": {"mem_limit": "2G"}},
]
c.EGICheckinAuthenticator.background_refresh_max_interval = 2
"""
)


@contextlib.contextmanager
def spawner_hub(workdir, extra_config: str = "") -> Iterator[EGIHub]:
    """A running hub with EGISpawner against the Kubernetes emulator (a process, as a cluster
    is); ``extra_config`` is appended to HUB_CONFIG."""
    hub = EGIHub(
        workdir / "hub",
        HUB_CONFIG + extra_config,
        provider_implementation=CERTIFIED,
        access_token_lifetime=TOKEN_LIFETIME,
    )
    with on_cluster(hub, workdir / "k8s"):
        yield hub


@pytest.fixture(scope="module")
def egi(tmp_path_factory):
    with spawner_hub(tmp_path_factory.mktemp("spawner-e2e")) as hub:
        yield hub


# ----- helpers ---------------------------------------------------------------------------


def start(egi, user: str, server: str = "", **options) -> httpx.Response:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    return egi.hub.api("POST", path, json=options or None)


def started(egi, user: str, server: str = "") -> dict:
    r = start(egi, user, server)
    assert r.status_code in (201, 202), r.text
    return egi.hub.wait_for_server(user, server)


def stop(egi, user: str, server: str = "") -> None:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    r = egi.hub.api("DELETE", path)
    assert r.status_code in (202, 204), r.text
    egi.hub.wait_for_server(user, server, ready=False)


def pod(egi, user: str, server: str = "") -> dict:
    """The user's pod as the Kubernetes API shows it."""
    for p in egi.k8s.list("pods", NS):
        annotations = p["metadata"].get("annotations") or {}
        if annotations.get(ann.USERNAME) == user and (
            annotations.get(ann.SERVERNAME, "") == server
        ):
            return p
    raise AssertionError(f"no pod for {user}/{server}")


def volumes_by_mount(p: dict) -> dict[str, dict]:
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in p["spec"]["containers"][0]["volumeMounts"]}


def secret_tokens(egi, name: str) -> dict[str, str] | None:
    secret = egi.k8s.get("secrets", NS, name)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def notebook_environ(egi, user: str, server: str = "") -> dict[str, str]:
    """The environment of ``user``'s running single-user server process of this test's hub
    (what a notebook sees). Other tests run hubs with the same users at the same time: the
    process is the one whose hub API URL has this hub's port."""
    api_port = f":{egi.hub.hub_port}/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            raw = (proc / "environ").read_bytes()
        except OSError:
            continue
        env = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
        if env.get("JUPYTERHUB_USER") == user and env.get("JUPYTERHUB_SERVER_NAME", "") == server:
            if "EGI_ACCESS_TOKEN_FILE" in env and api_port in env.get("JUPYTERHUB_API_URL", ""):
                return env
    raise AssertionError(f"no single-user server process for {user}/{server}")


def user_token(egi, user: str) -> str:
    r = egi.hub.api("POST", f"/users/{user}/tokens", json={"note": "e2e"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def through_proxy(egi, user: str, token: str, path: str, method: str = "GET", **kw):
    return httpx.request(
        method,
        f"{egi.hub.url}/user/{user}/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        **kw,
    )


# ----- tests -----------------------------------------------------------------------------


def test_login_spawn_token_file_refresh_stop_respawn_delete(egi):
    alice = "alice@egi.eu"
    assert login(egi.hub.url, "alice").ok
    started(egi, alice)
    token = user_token(egi, alice)

    # the single-user server answers through the proxy
    status = through_proxy(egi, alice, token, "api/status")
    assert status.status_code == 200, status.text
    assert "started" in status.json()

    # the pod: home claim, VO volume (alice is a member), token Secret, accounting annotations
    first = pod(egi, alice)
    mounts = volumes_by_mount(first)
    claim = mounts["/home/jovyan"]["persistentVolumeClaim"]["claimName"]
    assert mounts["/data/notebooks"]["persistentVolumeClaim"]["claimName"] == "vo-notebooks-data"
    secret_name = mounts["/var/run/secrets/egi.eu/"]["secret"]["secretName"]
    assert first["metadata"]["annotations"][ann.PRIMARY_VO] == "vo.access.egi.eu"
    assert first["metadata"]["annotations"][ann.FLAVOR] == "standard"
    assert egi.k8s.get("persistentvolumeclaims", NS, claim) is not None

    # the token file the notebook is told about holds the current access token, only that
    env = notebook_environ(egi, alice)
    token_file = Path(env["EGI_ACCESS_TOKEN_FILE"])
    assert token_file.name == "access_token"
    state = egi.auth_state(alice)
    assert state["refresh_token"] not in "".join(env.values())
    wait_until(
        lambda: token_file.read_text() == egi.auth_state(alice)["access_token"],
        5,
        "the token file to hold the current access token",
    )
    assert sorted(p.name for p in token_file.parent.iterdir() if not p.name.startswith(".")) == [
        "access_token",
        "id_token",
    ]
    assert state["refresh_token"] not in str(secret_tokens(egi, secret_name))

    # after a background refresh the same file holds the new token
    old = token_file.read_text()

    def refreshed():
        current = egi.auth_state(alice)["access_token"]
        return current != old and token_file.read_text() == current

    wait_until(refreshed, TOKEN_LIFETIME + 10, "a refreshed token in the token file")
    assert Path(notebook_environ(egi, alice)["EGI_ACCESS_TOKEN_FILE"]) == token_file
    assert egi.provider.introspect(token_file.read_text())["active"] is True

    # work kept in the home directory survives stop and respawn on the same claim
    put = through_proxy(
        egi,
        alice,
        token,
        "api/contents/kept.txt",
        "PUT",
        json={"type": "file", "format": "text", "content": "still here"},
    )
    assert put.status_code in (200, 201), put.text
    stop(egi, alice)
    started(egi, alice)
    second = pod(egi, alice)
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert volumes_by_mount(second)["/home/jovyan"]["persistentVolumeClaim"]["claimName"] == claim
    got = through_proxy(egi, alice, token, "api/contents/kept.txt")
    assert got.status_code == 200 and got.json()["content"] == "still here"
    assert len(egi.k8s.list("persistentvolumeclaims", NS)) == 1

    # deleting the user removes the token Secret and keeps the claim (and the work)
    stop(egi, alice)
    assert egi.hub.api("DELETE", f"/users/{alice}").status_code == 204
    assert egi.k8s.get("secrets", NS, secret_name) is None
    assert egi.k8s.get("persistentvolumeclaims", NS, claim) is not None


def test_named_servers_only_no_vo_volume_forbidden_profile_and_deletion(egi):
    bob = "bob@egi.eu"  # member of vo.access.egi.eu only
    assert login(egi.hub.url, "bob").ok
    started(egi, bob, "lab")
    p = pod(egi, bob, "lab")
    mounts = volumes_by_mount(p)
    assert "/data/notebooks" not in mounts  # not a member of vo.notebooks.egi.eu
    secret_name = mounts["/var/run/secrets/egi.eu/"]["secret"]["secretName"]
    # a background refresh may land between the two reads: compare until they agree
    deadline = time.monotonic() + 10
    while True:
        in_secret = secret_tokens(egi, secret_name)["access_token"]
        if in_secret == egi.auth_state(bob)["access_token"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert in_secret == egi.auth_state(bob)["access_token"]

    # a profile for another VO, asked for through the REST API: refused, nothing created
    pods_before = len(egi.k8s.list("pods", NS))
    refused = start(egi, bob, "big", profile="large")
    assert refused.status_code == 403, refused.text
    assert "'large' is not available to you: it requires vo.notebooks.egi.eu" in refused.text
    assert not (egi.user_model(bob)["servers"].get("big") or {}).get("ready")
    assert len(egi.k8s.list("pods", NS)) == pods_before

    # a user who only ever had named servers: deleting the user removes the Secret
    stop(egi, bob, "lab")
    assert egi.hub.api("DELETE", f"/users/{bob}").status_code == 204
    assert egi.k8s.get("secrets", NS, secret_name) is None
    home = mounts["/home/jovyan"]["persistentVolumeClaim"]["claimName"]
    assert egi.k8s.get("persistentvolumeclaims", NS, home) is not None


def test_user_without_auth_state_spawns(egi):
    # The status service's probe user is created through the API and never logs in; its
    # server is started by another identity, so the hub keeps its (absent) auth as is.
    assert egi.hub.api("POST", "/users/probe").status_code == 201
    started(egi, "probe")
    status = through_proxy(egi, "probe", egi.hub.admin_token, "api/status")
    assert status.status_code == 200, status.text
    mounts = volumes_by_mount(pod(egi, "probe"))
    assert "/data/notebooks" not in mounts
    secret_name = mounts["/var/run/secrets/egi.eu/"]["secret"]["secretName"]
    assert secret_tokens(egi, secret_name) == {}
    token_dir = Path(notebook_environ(egi, "probe")["EGI_ACCESS_TOKEN_FILE"]).parent
    assert [p for p in token_dir.iterdir() if not p.name.startswith(".")] == []
    assert "Traceback" not in egi.hub.log()
    stop(egi, "probe")
