"""``jupyterhub_config.py.example`` is a valid, working production configuration.

The file's own text (placeholders filled in, nothing else changed) runs in a real JupyterHub
with configurable-http-proxy, against the real local OpenID provider and the Kubernetes API
emulator (a separate process, as a cluster would be). A few lines appended after it adapt
what only exists in a cluster: the issuer (Check-in -> local provider), service addresses,
the container command (the emulator runs pods as local processes, not images) and the status
probe's schedule.

Service addresses: the example's URLs are ``http://hub:<port>`` as in a z2jh hub pod, where
``hub`` is the hub Service. Here no name ``hub`` resolves, and the hub's proxy routes to the
service URL, so the appended lines change each URL's host to ``127.0.0.1`` (and its port to a
free one) and nothing else. The services then listen on loopback by their default; that with
the example's own URLs they listen on all interfaces, and answer there, is what
``test_service_bind.py`` shows, with each service's hubconfig-built command and a hub's
environment.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.hub import ROOT, HubProcess, free_port
from tests.harness.k8s.process import EmulatorProcess
from tests.harness.login import login
from tests.harness.provider import CERTIFIED, ProviderProcess, make_provider_config

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

EXAMPLE = ROOT / "jupyterhub_config.py.example"
NAMESPACE = "notebooks"
PLACEHOLDER = re.compile(r"<[^<>\n]*>")


def filled_example(hub: HubProcess, provider: ProviderProcess, workdir: Path) -> str:
    """The example's text with every <placeholder> replaced; fails on one left unfilled."""
    text = EXAMPLE.read_text()
    replacements = {
        "https://<your notebooks host>": hub.url,
        "<your notebooks host>": "127.0.0.1",
        "<your Check-in client id>": provider.client_id,
        "<your Check-in client secret>": "unused: the secret comes from the environment",
        "<your namespace>": "unused: POD_NAMESPACE is set",
        "<your single-user image, e.g. quay.io/jupyter/scipy-notebook:2025-01-06>": (
            "quay.io/jupyter/scipy-notebook:2025-01-06"
        ),
        "<your storage class, e.g. nfs-client>": "nfs-client",
        "<vo.notebooks.egi.eu shared claim>": "vo-notebooks-shared",
        "<vo.access.egi.eu datasets claim>": "vo-access-datasets",
        "<db host>": "unused: EGI_ACCOUNTING_DB_URL is set",
        "<your GOCDB site name>": "EXAMPLE-SITE",
        "/srv/jupyterhub/": f"{workdir}/",
    }
    for old, new in replacements.items():
        assert old in text, f"the example no longer has {old!r}: update this test"
        text = text.replace(old, new)
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    left = PLACEHOLDER.findall(code)
    assert not left, f"placeholders this test does not fill: {left}"
    return text


def cluster_adaptations(ports: dict[str, int], provider: ProviderProcess) -> str:
    return f"""
# ---- appended by tests/e2e/test_example_config.py: what only exists in a cluster ----
c.EGICheckinAuthenticator.oidc_issuer = {provider.issuer!r}
c.EGICheckinAuthenticator.discovery_retries = 1
c.EGISpawner.cmd = ["jupyterhub-singleuser"]   # the emulator runs commands, not images
c.EGISpawner.args = ["--ServerApp.allow_root=True"]
c.EGISpawner.start_timeout = 60
ports = {ports!r}
for service in c.JupyterHub.services:
    if service["name"] in ports:
        assert service["url"].startswith("http://hub:"), service["url"]  # the cluster's shape
        service["url"] = "http://127.0.0.1:%d" % ports[service["name"]]
    if service["name"] == "status":
        service["command"] = [*service["command"], "--StatusApp.first_run_delay=-1"]
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("example")
    hub = HubProcess(workdir / "hub")
    provider = ProviderProcess(CERTIFIED)  # as EGI Check-in
    emulator = EmulatorProcess(workdir / "k8s", run_processes=True).start()
    try:
        provider.start(
            make_provider_config(f"{hub.url}/hub/oauth_callback", f"{hub.url}/hub/login")
        )
        ports = {name: free_port() for name in ("tokens", "status", "accounting")}
        hub.config = filled_example(hub, provider, workdir) + cluster_adaptations(ports, provider)
        hub.env = {
            "KUBECONFIG": str(emulator.kubeconfig),
            "POD_NAMESPACE": NAMESPACE,
            "EGI_CHECKIN_CLIENT_SECRET": provider.client_secret,
            "EGI_ACCOUNTING_DB_URL": f"sqlite:///{workdir / 'accounting.sqlite'}",
            "EGI_NOTEBOOKS_PROXY_URL": hub.url,
        }
        hub.start()
        yield hub, provider, emulator
    finally:
        hub.stop()
        provider.stop()
        emulator.stop()


def wait_for(url: str, ok, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5, follow_redirects=False)
            if ok(last):
                return last
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered as expected; last: {last}")


def test_hub_api_answers(deployment):
    hub, _, _ = deployment
    r = httpx.get(f"{hub.hub_api_url}/", timeout=10)
    assert r.status_code == 200 and "version" in r.json()


def test_services_answer_through_the_proxy(deployment):
    hub, _, _ = deployment
    tokens = wait_for(f"{hub.url}/services/tokens/", lambda r: r.status_code == 200)
    assert tokens.json()["service"] == "egi-notebooks tokens"
    status = wait_for(f"{hub.url}/services/status/status.json", lambda r: r.status_code == 200)
    assert status.json()["code"] == "UNKNOWN"  # first_run_delay=-1: no run yet
    # the accounting admin view answers by sending the browser to the hub's OAuth
    accounting = wait_for(f"{hub.url}/services/accounting/", lambda r: r.status_code == 302)
    assert "/hub/api/oauth2/authorize" in accounting.headers["location"]


def test_services_have_only_their_roles(deployment):
    hub, _, _ = deployment
    for name in ("tokens", "status", "accounting"):
        model = hub.api("GET", f"/services/{name}").json()
        assert model["roles"] == [f"{name}-service"], model
        assert not model.get("admin"), model


def test_vo_authorization_and_admin_entitlements(deployment):
    hub, _, _ = deployment
    alice = login(hub.url, "alice")
    assert alice.ok, alice.response.text[:300]
    admin = login(hub.url, "admin")
    assert admin.ok
    refused = login(hub.url, "mallory")
    assert refused.response.status_code == 403
    users = {u["name"]: u for u in hub.api("GET", "/users").json()}
    assert "alice@egi.eu" in users and "mallory@egi.eu" not in users
    assert not users["alice@egi.eu"]["admin"] and users["admin@egi.eu"]["admin"]
    assert set(users["alice@egi.eu"]["groups"]) == {"vo.notebooks.egi.eu", "vo.access.egi.eu"}


def test_spawn_uses_profiles_vo_volumes_and_token_secret(deployment):
    hub, _, emulator = deployment
    if "alice@egi.eu" not in {u["name"] for u in hub.api("GET", "/users").json()}:
        assert login(hub.url, "alice").ok
    bob = login(hub.url, "bob")
    assert bob.ok
    # bob (vo.access.egi.eu only) may not have the vo.notebooks.egi.eu profile
    r = hub.api("POST", "/users/bob@egi.eu/server", json={"profile": "large"})
    assert r.status_code >= 400 and "large" in r.text, r.text
    r = hub.api("POST", "/users/alice@egi.eu/server", json={"profile": "large"})
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server("alice@egi.eu", timeout=60)
    pods = emulator.list("pods", NAMESPACE)
    (pod,) = [p for p in pods if p["metadata"]["annotations"].get("hub.jupyter.org/username")
              == "alice@egi.eu"]  # fmt: skip
    annotations = pod["metadata"]["annotations"]
    assert annotations["egi.eu/flavor"] == "large"
    assert annotations["egi.eu/primary-vo"] == "vo.notebooks.egi.eu"
    container = pod["spec"]["containers"][0]
    assert int(container["resources"]["limits"]["memory"]) == 32 * 1024**3  # "32G"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    # alice is a member, not a manager: the VO volume is read-only; not in the datasets group
    assert mounts["/home/jovyan/datahub/vo.notebooks.egi.eu"]["readOnly"] is True
    assert "/home/jovyan/datahub/datasets" not in mounts
    assert mounts["/var/run/secrets/egi.eu/"]["readOnly"] is True
    assert "subPath" not in mounts["/var/run/secrets/egi.eu/"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EGI_ACCESS_TOKEN_FILE"] == "/var/run/secrets/egi.eu/access_token"
    assert env["EGI_NOTEBOOKS_TOKEN_URL"] == f"{hub.url}/services/tokens/token"
    secrets = emulator.list("secrets", NAMESPACE)
    secret = next(s for s in secrets if s["metadata"]["name"].startswith("egi-token-alice"))
    assert set(secret["data"]) <= {"access_token", "id_token"} and secret["data"]["access_token"]
    # the notebook reaches the tokens service with its own server token, as the docs show
    server_token = env["JUPYTERHUB_API_TOKEN"]
    r = httpx.get(
        env["EGI_NOTEBOOKS_TOKEN_URL"],
        headers={"Authorization": f"token {server_token}"},
        timeout=10,
    )
    assert r.status_code == 200 and json.loads(r.text)["access_token"]
    r = hub.api("DELETE", "/users/alice@egi.eu/server")
    assert r.status_code in (202, 204)
    hub.wait_for_server("alice@egi.eu", ready=False, timeout=60)
