"""A production rehearsal: ``docs/deploy/values.yaml`` as z2jh would run it, used as users do.

The values file (placeholders filled in, nothing else changed) becomes hub configuration the
way the chart's ``jupyterhub_config.py`` builds it (``tests/harness/z2jh.py``): chart defaults,
``hub.config`` as-is, ``hub.extraConfig`` snippets, ``hub.extraEnv`` from the operator's Secret
(created in the Kubernetes emulator, as the deploy page says, with the VO shared claim). A real
JupyterHub with configurable-http-proxy runs it against the real local OpenID provider and the
Kubernetes API emulator as a process; single-user servers are real processes in emulated pods.

Cluster shape: the hub runs in a private mount namespace (``unshare --mount``) where
``/etc/hosts`` names ``hub`` and ``proxy-public`` 127.0.0.1, as the cluster's DNS names the hub
and proxy Services, ``/srv/jupyterhub`` (the hub's PVC and working directory) is a
directory of this test, and so is every ``hub.extraVolumeMounts`` path (the claim it names,
which the operator created: the APEL queue's ``egi-notebooks-apel-spool`` at ``/srv/apel``).
So the service URLs keep the host ``hub`` (they bind to all interfaces, as in a pod, and the
proxy reaches them by that name) and the values' absolute paths stay.
All traffic goes to loopback addresses.

What is adapted, because only a cluster has it:

- the issuer: the local provider instead of Check-in (``oidc_issuer``);
- ports: every hub-pod port (``hub.service.extraPorts``, 8081) and the proxy's port 80 become
  free ports on this shared machine (the hosts stay ``hub`` / ``proxy-public`` / ``localhost``);
- pods run as root here (uid 1000 in a cluster): ``--ServerApp.allow_root=True``; the
  container command is the chart's own ``singleuser.cmd`` (the emulator runs commands,
  which is what the chart already sets);
- the hub image's Python: the culler's ``python3`` is this venv's interpreter; without
  ``jupyterhub-idle-culler`` installed (the chart's image has it) the culler is left out,
  which fails under CI;
- the Kubernetes client's credentials: the emulator's kubeconfig instead of the service
  account; a harness admin service token to observe the hub.

Nothing else is overridden: the status probe runs on the schedule and the accounting service on
the poll interval of values.yaml (the probe is started now through its admin API, as an
operator would; accounting's 60 s poll makes this module take a few minutes).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import importlib.util
import io
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import yaml
from dirq.QueueSimple import QueueSimple
from sqlalchemy import select

from egi_notebooks.services.accounting import db
from egi_notebooks.services.accounting.models import Session
from egi_notebooks.services.status.kernel import KernelClient
from tests.harness.hub import ROOT, HubProcess, free_port
from tests.harness.k8s.process import EmulatorProcess
from tests.harness.login import login
from tests.harness.provider import CERTIFIED, ProviderProcess, make_provider_config
from tests.harness.z2jh import Chart, HubMount, config_file_text, fill_placeholders, load_values

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

VALUES = ROOT / "docs" / "deploy" / "values.yaml"
APEL_MANIFEST = ROOT / "docs" / "deploy" / "apel-ssm-cronjob.yaml"
NAMESPACE = "notebooks"
HUB_POD_PORT = 8081  # the hub container's port (the culler's --url=http://localhost:8081)
ALICE = "alice@egi.eu"
ADMIN = "admin@egi.eu"
CULLER = "jupyterhub-idle-culler"


def fill(text: str, hub: HubProcess, provider: ProviderProcess) -> str:
    """values.yaml with its placeholders filled; an unknown placeholder fails."""
    known = {
        "<openssl rand -hex 32>": lambda: secrets.token_hex(32),
        "<your notebooks host>": lambda: "127.0.0.1",
        "<your single-user image>": lambda: "quay.io/jupyter/scipy-notebook",
        "<tag>": lambda: "2025-01-06",
        "<your registry>": lambda: "registry.example.org",
        "<your Check-in client id>": lambda: provider.client_id,
        "<your Check-in client secret>": lambda: provider.client_secret,
        "<your storage class>": lambda: "nfs-client",
        "<your GOCDB site>": lambda: "EXAMPLE-SITE",
    }
    seen: set[str] = set()

    def value(placeholder: str) -> str:
        if placeholder not in known:
            raise AssertionError(f"values.yaml has {placeholder!r}: teach this test to fill it")
        seen.add(placeholder)
        return known[placeholder]()

    public = "https://<your notebooks host>"
    assert public in text, "values.yaml no longer has the public URL placeholder"
    text = text.replace(public, hub.url)
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    filled = fill_placeholders("\n".join(lines), value)
    assert seen == set(known), f"placeholders gone from values.yaml: {set(known) - seen}"
    return filled


def adaptations(provider: ProviderProcess, hub: HubProcess, ports: dict[int, int]) -> str:
    """What only exists in a cluster (the module docstring lists it), appended after the chart."""
    culler = importlib.util.find_spec("jupyterhub_idle_culler") is not None
    return f"""
# ---- tests/e2e/test_production_rehearsal.py: what only exists in a cluster ----
import re as _re, sys as _sys
c.EGICheckinAuthenticator.oidc_issuer = {provider.issuer!r}
c.EGISpawner.args = ["--ServerApp.allow_root=True"]  # uid 1000 in a cluster, root here
_ports = {ports!r}
_proxy_port = {hub.port}
def _moved(text):
    text = _re.sub(r"(//(?:hub|localhost)):(\\d+)",
                   lambda m: "%s:%d" % (m.group(1), _ports.get(int(m.group(2)), int(m.group(2)))),
                   text)
    return _re.sub(r"//proxy-public(?=/|$)", "//proxy-public:%d" % _proxy_port, text)
for _service in c.JupyterHub.services:
    if "url" in _service:
        _service["url"] = _moved(_service["url"])
    if "command" in _service:
        _service["command"] = [_moved(a) for a in _service["command"]]
        if _service["command"][0] == "python3":
            _service["command"][0] = _sys.executable
if not {culler!r}:
    print("z2jh rehearsal: jupyterhub-idle-culler is not installed: the culler is left out")
    c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != {CULLER!r}]
    c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if r["name"] != {CULLER!r}]
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {hub.admin_token!r}}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["test-admin"]}})
c.JupyterHub.load_roles.append({{"name": "test-inspect-auth-state", "scopes": ["admin:auth_state"],
                                "services": ["test-admin"]}})  # test-only: admins may not read it
"""


def namespace_prefix(
    workdir: Path, state: Path, mounts: list[tuple[Path, HubMount]] = ()
) -> list[str]:
    """unshare: a private /etc/hosts naming the hub and proxy Services, /srv/jupyterhub, and
    each of ``mounts`` (a test directory at the hub's mount path). /srv is a private tmpfs: a
    mount path under it is made there, never on the machine's /srv; any other mount path must
    already exist (it is only covered, in the private namespace)."""
    hosts = workdir / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + "\n127.0.0.1 hub proxy-public\n")
    q = shlex.quote
    steps = [
        "set -e",
        f"mount --bind {q(str(hosts))} /etc/hosts",
        "mount -t tmpfs tmpfs /srv",
        "mkdir -p /srv/jupyterhub",
        f"mount --bind {q(str(state))} /srv/jupyterhub",
    ]
    for source, mount in mounts:
        target = q(mount.mount_path)
        if mount.mount_path.startswith("/srv/"):
            steps.append(f"mkdir -p {target}")
        elif not Path(mount.mount_path).is_dir():
            raise AssertionError(f"{mount.mount_path}: only paths under /srv can be made here")
        steps.append(f"mount --bind {q(str(source))} {target}")
        if mount.read_only:
            steps.append(f"mount -o remount,bind,ro {target}")
    steps.append('cd /srv/jupyterhub; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "; ".join(steps), "sh"]


def require_namespaces() -> None:
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /srv"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        message = f"unshare --mount is needed (root, mount namespaces): {probe.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class Deployment:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state = workdir / "srv-jupyterhub"  # the hub's /srv/jupyterhub
        self.state.mkdir()
        self.claims = workdir / "claims"  # one directory per claim the hub mounts
        self.hub = HubProcess(workdir / "hub")
        self.provider = ProviderProcess(CERTIFIED)  # as EGI Check-in
        self.emulator = EmulatorProcess(workdir / "k8s", run_processes=True)
        self.chart: Chart | None = None
        self.values: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}

    def secret_value(self, name: str, key: str) -> str:
        secret = self.emulator.get("secrets", NAMESPACE, name)
        assert secret is not None, f"Secret {name} does not exist (the docs say create it)"
        return base64.b64decode(secret["data"][key]).decode()

    def operator_steps(self) -> None:
        """What the deploy page asks for before ``helm install``."""
        db_url = "sqlite:////srv/jupyterhub/accounting.sqlite"
        self.emulator.post("secrets", NAMESPACE, {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "egi-notebooks-accounting", "namespace": NAMESPACE},
            "data": {"db-url": base64.b64encode(db_url.encode()).decode()},
        })  # fmt: skip
        for claim in {v["claim"] for v in self.hub_config("EGISpawner")["vo_volumes"].values()}:
            self.emulator.post("persistentvolumeclaims", NAMESPACE, {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": NAMESPACE},
                "spec": {"accessModes": ["ReadWriteMany"],
                         "resources": {"requests": {"storage": "1Gi"}}},
            })  # fmt: skip
        # kubectl apply -f apel-ssm-cronjob.yaml: its claim holds the APEL queue
        for document in yaml.safe_load_all(APEL_MANIFEST.read_text()):
            if document["kind"] == "PersistentVolumeClaim":
                document["metadata"]["namespace"] = NAMESPACE
                document["spec"]["storageClassName"] = "nfs-client"
                self.emulator.post("persistentvolumeclaims", NAMESPACE, document)

    def hub_mounts(self) -> list[tuple[Path, HubMount]]:
        """The hub pod's extra mounts, each with its claim's directory; a claim that does not
        exist would keep the hub pod Pending."""
        mounts = []
        for mount in self.chart.hub_mounts():
            claim = self.emulator.get("persistentvolumeclaims", NAMESPACE, mount.claim)
            assert claim is not None, f"hub mounts claim {mount.claim}, which nobody created"
            source = self.claims / mount.claim / mount.sub_path
            source.mkdir(parents=True, exist_ok=True)
            mounts.append((source, mount))
        return mounts

    def claim_dir(self, mount_path: str) -> Path:
        """The test directory that is the hub's ``mount_path`` (a hub.extraVolumeMounts path
        or below it)."""
        for source, mount in sorted(self.hub_mounts(), key=lambda m: -len(m[1].mount_path)):
            if mount_path == mount.mount_path or mount_path.startswith(mount.mount_path + "/"):
                return source / mount_path[len(mount.mount_path) :].lstrip("/")
        raise AssertionError(f"{mount_path} is on no hub.extraVolumeMounts path")

    def hub_config(self, section: str) -> dict[str, Any]:
        return self.values["hub"]["config"][section]

    def start(self) -> Deployment:
        hub, provider = self.hub, self.provider
        self.emulator.start()
        provider.start(
            make_provider_config(f"{hub.url}/hub/oauth_callback", f"{hub.url}/hub/login")
        )
        text = fill(VALUES.read_text(), hub, provider)
        self.values = load_values(text)
        values_path = self.workdir / "values.yaml"  # the chart mounts it into the hub pod
        values_path.write_text(text)
        self.chart = Chart(self.values, namespace=NAMESPACE)
        generated = self.workdir / "generated.json"
        generated.write_text(json.dumps(self.chart.generated))
        self.operator_steps()
        pod_ports = [p["targetPort"] for p in self.values["hub"]["service"]["extraPorts"]]
        ports = {port: free_port() for port in pod_ports}
        ports[HUB_POD_PORT] = hub.hub_port
        hub.config = (
            config_file_text(values_path, NAMESPACE, generated)
            + adaptations(provider, hub, ports)
        )  # fmt: skip
        hub.env = {
            **self.chart.hub_env(self.secret_value),
            "KUBECONFIG": str(self.emulator.kubeconfig),
        }
        hub.command_prefix = namespace_prefix(self.workdir, self.state, self.hub_mounts())
        hub.start(timeout=90)
        return self

    def stop(self) -> None:
        self.hub.stop()
        self.provider.stop()
        self.emulator.stop()

    # ----- helpers ---------------------------------------------------------------------

    def user_token(self, user: str) -> str:
        """An API token of ``user``, as one made on the hub's token page."""
        if user not in self.tokens:
            r = self.hub.api("POST", f"/users/{user}/tokens", json={"note": "rehearsal"})
            assert r.status_code in (200, 201), r.text
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def pod_of(self, user: str, server: str = "") -> dict[str, Any]:
        pods = [
            p
            for p in self.emulator.list("pods", NAMESPACE)
            if p["metadata"]["annotations"].get("hub.jupyter.org/username") == user
            and p["metadata"]["annotations"].get("hub.jupyter.org/servername", "") == server
        ]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]

    def auth_state(self, user: str) -> dict[str, Any]:
        return self.hub.api("GET", f"/users/{user}").json()["auth_state"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_namespaces()
    d = Deployment(tmp_path_factory.mktemp("rehearsal"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def alice(deployment):
    """alice (a VO member) logged in with her browser and started her default server through
    the spawn form; ``(browser, server model)``."""
    hub = deployment.hub
    browser = login(hub.url, "alice")
    assert browser.ok, browser.response.text[:300]
    form = browser.client.get(f"{hub.url}/hub/spawn/{ALICE}")
    assert form.status_code == 200, form.text[:300]
    assert 'value="small"' in form.text and 'value="large"' in form.text
    # the form posts to its action URL, which carries the page's _xsrf token
    action = re.search(r'id="spawn_form"\s+action="([^"]+)"', form.text)
    assert action, form.text[:500]
    r = browser.client.post(urljoin(str(form.url), html.unescape(action.group(1))),
                            data={"profile": "small"})  # fmt: skip
    assert r.status_code in (302, 303), r.text[:500]
    server = hub.wait_for_server(ALICE, timeout=120)
    return browser, server


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ----- the values themselves ------------------------------------------------------------------


def test_services_run_as_the_values_configure_them(deployment):
    services = deployment.hub.api("GET", "/services").json()
    for name in ("tokens", "status", "accounting"):
        assert urlsplit(services[name]["url"]).hostname == "hub", services[name]
        assert services[name]["roles"] == [f"{name}-service"] and not services[name]["admin"]
    if os.environ.get("CI") == "true":
        assert CULLER in services, "jupyterhub-idle-culler must be installed (the chart runs it)"
    # every service answers through the proxy, which reaches it at http://hub:<port>
    tokens = _wait(lambda: _get_ok(f"{deployment.hub.url}/services/tokens/"), 60, "tokens")
    assert tokens.json()["service"] == "egi-notebooks tokens"


def _get_ok(url: str) -> httpx.Response | None:
    try:
        r = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    return r if r.status_code == 200 else None


# ----- a VO member's session ------------------------------------------------------------------


def test_vo_member_spawns_through_egispawner(deployment, alice):
    pod = deployment.pod_of(ALICE)
    assert pod["metadata"]["annotations"]["egi.eu/flavor"] == "small"
    assert pod["metadata"]["annotations"]["egi.eu/primary-vo"] == "vo.notebooks.egi.eu"
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    spec = pod["spec"]
    assert spec["schedulerName"] == "user-scheduler"  # the chart's user scheduler
    assert [c["name"] for c in spec.get("initContainers", [])] == ["block-cloud-metadata"]
    assert spec["securityContext"]["fsGroup"] == 100
    container = spec["containers"][0]
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["image"] == "quay.io/jupyter/scipy-notebook:2025-01-06"
    # what values.yaml documents for the default profile: "Small (2 CPU, 4 GB)", 1 GB requested
    resources = container["resources"]
    assert int(resources["limits"]["memory"]) == 4 * 1024**3
    assert int(resources["requests"]["memory"]) == 1024**3
    assert float(resources["limits"]["cpu"]) == 2
    assert float(resources["requests"]["cpu"]) == pytest.approx(0.02)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/home/jovyan"]["name"] == "home"  # EGISpawner's home claim, no chart volume
    assert mounts["/home/jovyan/datahub/vo.notebooks.egi.eu"]["readOnly"] is True
    assert mounts["/var/run/secrets/egi.eu/"]["readOnly"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EGI_NOTEBOOKS_TOKEN_URL"] == f"{deployment.hub.url}/services/tokens/token"


def test_token_file_is_current(deployment, alice):
    state = deployment.auth_state(ALICE)
    current = state["access_token"]
    secret_name = next(
        s["metadata"]["name"]
        for s in deployment.emulator.list("secrets", NAMESPACE)
        if s["metadata"]["name"].startswith("egi-token-alice")
    )
    assert sha(deployment.secret_value(secret_name, "access_token")) == sha(current)
    assert "refresh_token" not in deployment.emulator.get("secrets", NAMESPACE, secret_name)["data"]


async def test_notebook_reads_its_tokens_inside_the_server(deployment, alice):
    """Code in alice's kernel (her server's process, with the pod's environment) reads the
    token file and asks the tokens service with the server's own JUPYTERHUB_API_TOKEN."""
    _, server = alice
    hub = deployment.hub
    code = (
        "import hashlib, json, os, urllib.request\n"
        "h = lambda t: hashlib.sha256(t.encode()).hexdigest()\n"
        "file_token = open(os.environ['EGI_ACCESS_TOKEN_FILE']).read()\n"
        "req = urllib.request.Request(os.environ['EGI_NOTEBOOKS_TOKEN_URL'],\n"
        "    headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "with urllib.request.urlopen(req, timeout=30) as r:\n"
        "    service_token = json.load(r)['access_token']\n"
        "print(json.dumps({'file': h(file_token), 'service': h(service_token)}))\n"
    )
    kernel = KernelClient(f"{hub.url}{server['url']}", deployment.user_token(ALICE))
    try:
        await kernel.start()
        await kernel.connect()
        result = await kernel.execute(code)
    finally:
        await kernel.shutdown()
        await kernel.aclose()
    assert result.error is None, result.error
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    current = sha(deployment.auth_state(ALICE)["access_token"])
    assert seen == {"file": current, "service": current}


# ----- the operator's views -------------------------------------------------------------------


def test_status_probe_reports_ok(deployment):
    hub = deployment.hub
    admin = login(hub.url, "admin")
    assert admin.ok
    token = deployment.user_token(ADMIN)
    r = httpx.post(
        f"{hub.url}/services/status/run?wait=1",
        headers={"Authorization": f"token {token}"},
        timeout=400,
    )
    assert r.status_code == 200, r.text[:500]
    result = r.json()["result"]
    assert result["status"] == "OK", (result, hub.log_tail(80))
    status = httpx.get(f"{hub.url}/services/status/status.json", timeout=30).json()
    assert status["code"] == "OK", status


def _sessions(path: Path) -> list[Session]:
    engine, sessions = db.open_database(f"sqlite:///{path}")
    try:
        with sessions() as s:
            return list(s.scalars(select(Session).where(Session.user == ALICE)))
    finally:
        engine.dispose()


def _wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} not within {timeout:.0f} s")


def test_session_is_accounted_and_admin_sees_it(deployment, alice):
    hub = deployment.hub
    database = deployment.state / "accounting.sqlite"
    # accounting polls every 60 s (values.yaml keeps the default): the running session appears
    _wait(lambda: database.exists() and _sessions(database), 150, "alice's session record")
    r = hub.api("DELETE", f"/users/{ALICE}/server", token=deployment.user_token(ALICE))
    assert r.status_code in (202, 204), r.text
    hub.wait_for_server(ALICE, ready=False, timeout=120)
    (session,) = _wait(
        lambda: [s for s in _sessions(database) if s.end_time is not None], 150,
        "the end of alice's session",
    )  # fmt: skip
    assert session.primary_vo == "vo.notebooks.egi.eu" and session.flavor == "small"
    assert session.end_time > session.start_time
    # the admin usage view, through the hub's OAuth as an admin's browser would
    admin = login(hub.url, "admin").client
    today = time.strftime("%Y-%m-%d", time.gmtime())
    r = admin.get(
        f"{hub.url}/services/accounting/",
        params={"from": today, "to": today, "format": "csv"},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text[:500]
    rows = [row for row in csv.DictReader(io.StringIO(r.text)) if row["user"] == ALICE]
    assert rows and rows[0]["vo"] == "vo.notebooks.egi.eu", r.text[:500]
    bob = login(hub.url, "bob").client
    denied = bob.get(f"{hub.url}/services/accounting/", follow_redirects=True)
    assert denied.status_code == 403


def _queue_messages(directory: Path) -> list[str]:
    """The messages of a dirq queue, read as ssmsend reads them (lock, get, unlock)."""
    queue = QueueSimple(str(directory))
    messages = []
    for name in list(queue):
        if queue.lock(name):
            try:
                messages.append(queue.get(name).decode())
            finally:
                queue.unlock(name)
    return messages


def _child_pid(parent: int, *words: str) -> int | None:
    """The process of ``parent`` whose command line has all ``words`` (a managed service)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and all(w in argv for w in words):
            return int(proc.name)
    return None


def test_apel_queue_is_on_the_claim_ssmsend_reads(deployment, alice):
    """The accounting service writes its queue where the CronJob's ssmsend reads it: on the
    claim of apel-ssm-cronjob.yaml (mounted at /srv/apel), in --spool-dir=/srv/apel/outgoing.

    It exports at its start, then every apel_interval (1 h): to see a record arrive, the
    service is restarted after alice's session ended, as a hub pod restart does (SIGTERM; the
    hub starts a managed service again when it exits). Nothing of the configuration changes.
    """
    hub = deployment.hub
    command = hub.api("GET", "/services/accounting").json()["command"]
    (spool,) = [a.split("=", 1)[1] for a in command if a.startswith("--spool-dir=")]
    assert spool == "/srv/apel/outgoing"
    queue_dir = deployment.claim_dir(spool)
    assert queue_dir.is_relative_to(deployment.claims / "egi-notebooks-apel-spool")
    # the queue is made at the service's first cycle, on the claim, not in the hub's own
    _wait(queue_dir.is_dir, 150, f"the APEL queue {queue_dir}")
    assert not (deployment.state / "apel-outgoing").exists()
    # alice's session, ended (the accounting test ends it; alone, this test does)
    if hub.api("GET", f"/users/{ALICE}").json().get("servers"):
        hub.api("DELETE", f"/users/{ALICE}/server", token=deployment.user_token(ALICE))
        hub.wait_for_server(ALICE, ready=False, timeout=120)
    database = deployment.state / "accounting.sqlite"
    ended = _wait(
        lambda: [s for s in _sessions(database) if s.end_time is not None], 150,
        "the end of alice's session",
    )  # fmt: skip
    hub_pid = int((hub.workdir / "jupyterhub.pid").read_text())
    words = ("egi_notebooks.cli", "accounting")
    old = _child_pid(hub_pid, *words)
    assert old is not None, "no accounting service process under the hub"
    os.kill(old, signal.SIGTERM)
    _wait(lambda: (_child_pid(hub_pid, *words) or old) != old, 180, "accounting's restart")

    def queued() -> list[str]:
        return [m for m in _queue_messages(queue_dir) if ended[-1].vmuuid in m]

    (message, *_) = _wait(queued, 180, f"alice's record in {queue_dir}")
    assert message.startswith("APEL-cloud-message: v0.4\n")
    assert "SiteName: EXAMPLE-SITE\n" in message


def test_no_secret_in_the_logs(deployment):
    hub = deployment.hub
    log = hub.log()
    values = deployment.values
    for secret in (
        values["proxy"]["secretToken"],
        values["hub"]["config"]["CryptKeeper"]["keys"][0],
        deployment.provider.client_secret,
    ):
        assert secret not in log


def test_accounting_database_url_stays_out_of_the_hub_log(deployment):
    # the operator's Secret (with PostgreSQL it holds the password): JupyterHub logs each
    # service's command line and shows it to readers of the services API
    db_url = deployment.secret_value("egi-notebooks-accounting", "db-url")
    assert db_url not in deployment.hub.log()
    model = deployment.hub.api("GET", "/services/accounting").json()
    assert db_url not in json.dumps(model)
