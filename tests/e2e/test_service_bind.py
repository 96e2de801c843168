"""The hub-managed services listen where a z2jh hub pod's proxy can reach them.

In a z2jh hub pod a managed service's URL is ``http://hub:<port>/``: ``hub`` is the hub
Service (a ClusterIP), not an address of the pod, so a service that binds to its URL's host
cannot start. Here each service runs as a real process, with the command
``egi_notebooks.hubconfig`` builds and the environment a hub gives its managed services, for
a URL whose host is a name that does not resolve here (``hub``) and for a non-local IP
(``10.255.255.1``). It must answer on ``127.0.0.1:<port>``, which it does only when it listens
on all interfaces.

The hub API the services talk to is a small fake on loopback: this tests where the services
listen, not the hub (``test_example_config.py`` runs them under a real hub). An audit hook in
the service process (Python's ``socket.*`` audit events, loaded by ``sitecustomize`` from
``PYTHONPATH``; it only records) shows that nothing resolves or connects to a non-loopback
address: a service never connects to its own URL's host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from traitlets.config import Config

from egi_notebooks import hubconfig
from egi_notebooks.demo.processes import ChildProcess
from tests.harness.ports import free_port

pytestmark = pytest.mark.e2e

SERVICES = ("tokens", "status", "accounting")
HOSTS = ("hub", "10.255.255.1")
APP_CLASS = {"tokens": "TokensApp", "status": "StatusApp", "accounting": "AccountingApp"}

AUDIT_HOOK = """
import json, os, sys

_path = os.environ.get("EGI_TEST_SOCKET_AUDIT")

def _record(event, args):
    if not _path or event not in ("socket.getaddrinfo", "socket.connect", "socket.bind"):
        return
    if event == "socket.getaddrinfo":
        where = args[0]
    else:
        where = args[1]
    if isinstance(where, bytes):
        where = where.decode(errors="replace")
    if isinstance(where, tuple):
        where = list(where[:2])
    with open(_path, "a") as f:
        f.write(json.dumps([event, where]) + "\\n")

sys.addaudithook(_record)
"""


class FakeHubAPI(BaseHTTPRequestHandler):
    """Answers the few hub API calls the services make at start-up (an empty hub)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0].rstrip("/")
        if path == "/hub/api":
            self.reply(200, {"version": "5.5.0"})
        elif path in ("/hub/api/users", "/hub/api/groups"):
            self.reply(200, {"items": [], "_pagination": {"offset": 0, "limit": 200, "total": 0}})
        else:
            self.reply(404, {"status": 404, "message": "not in the fake hub"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def hub_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit")
    (path / "sitecustomize.py").write_text(AUDIT_HOOK)
    return path


def hub_managed_service(name: str, url: str, workdir: Path) -> dict:
    """The service entry ``egi_notebooks.hubconfig`` writes for ``name`` at ``url``."""
    c = Config()
    if name == "tokens":
        hubconfig.add_tokens_service(c, url=url)
    elif name == "status":
        # no scheduled probe run: this test is about listening, not probing
        hubconfig.add_status_service(c, url=url, args=["--StatusApp.first_run_delay=-1"])
    else:
        hubconfig.add_accounting_service(
            c, url=url, db_url=f"sqlite:///{workdir / 'accounting.sqlite'}"
        )
    (service,) = c.JupyterHub.services
    return service


def hub_environment(service: dict, api_url: str) -> dict[str, str]:
    """What a hub sets for a managed service (jupyterhub.services.service.Service.start and
    Spawner.get_env), with the hub API on loopback."""
    name = service["name"]
    prefix = f"/services/{name}/"
    return {
        "PATH": os.environ.get("PATH", ""),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        **service.get("environment", {}),
        "JUPYTERHUB_SERVICE_NAME": name,
        "JUPYTERHUB_SERVICE_URL": service["url"],
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_API_TOKEN": "fake-hub-token-for-a-bind-test",
        "JUPYTERHUB_CLIENT_ID": f"service-{name}",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps([f"access:services!service={name}"]),
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([f"access:services!service={name}"]),
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "PYTHONUNBUFFERED": "1",
    }


def start_service(name: str, url: str, hub_api: str, audit_dir: Path, workdir: Path):
    service = hub_managed_service(name, url, workdir)
    env = hub_environment(service, hub_api)
    env["PYTHONPATH"] = str(audit_dir)
    env["EGI_TEST_SOCKET_AUDIT"] = str(workdir / "sockets.jsonl")
    assert service["command"][:3] == [sys.executable, "-m", "egi_notebooks.cli"]
    child = ChildProcess(name, service["command"], workdir / f"{name}.log", env=env)
    return child.start(cwd=workdir), workdir / "sockets.jsonl"


def is_local(where) -> bool:
    """Loopback, all interfaces, or a Unix socket path."""
    host = where[0] if isinstance(where, list) else where
    if host in (None, "", "localhost"):
        return True
    if isinstance(host, str) and host.startswith("/"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("name", SERVICES)
def test_service_listens_on_all_interfaces_for_a_cluster_url(
    name, host, hub_api, audit_dir, tmp_path
):
    port = free_port()
    child, audit = start_service(name, f"http://{host}:{port}", hub_api, audit_dir, tmp_path)
    try:
        local = f"http://127.0.0.1:{port}/services/{name}/"
        # 302: accounting's admin view sends the browser to the hub's OAuth
        child.wait_http(local, timeout=90, ok=(200, 302))
        assert child.running
        binds = [where for event, where in map(json.loads, audit.read_text().splitlines())
                 if event == "socket.bind"]  # fmt: skip
        assert ["0.0.0.0", port] in binds, binds
    finally:
        child.stop()
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    elsewhere = [e for e in events if e[0] != "socket.bind" and not is_local(e[1])]
    assert not elsewhere, f"{name} reached beyond loopback: {elsewhere}"
    assert "Traceback" not in child.log(), child.log_tail()


@pytest.mark.parametrize("name", SERVICES)
def test_port_in_use_is_one_clear_line_and_a_failed_exit(name, hub_api, audit_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        child, _ = start_service(name, f"http://hub:{port}", hub_api, audit_dir, tmp_path)
        try:
            code = child.proc.wait(timeout=90)
        finally:
            child.stop()
    log = child.log()
    assert code != 0, log
    assert "Traceback" not in log, log
    lines = [line for line in log.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, log
    assert f"0.0.0.0:{port}" in lines[0] and f"{APP_CLASS[name]}.bind_url" in lines[0], log


def test_bind_url_option_and_loopback_default(hub_api, audit_dir, tmp_path):
    """A loopback URL keeps the service on loopback (the demo, the tests); ``bind_url`` given
    to hubconfig wins over the default."""
    port = free_port()
    child, audit = start_service("tokens", f"http://127.0.0.1:{port}", hub_api, audit_dir,
                                 tmp_path)  # fmt: skip
    try:
        child.wait_http(f"http://127.0.0.1:{port}/services/tokens/", timeout=90)
    finally:
        child.stop()
    binds = [w for e, w in map(json.loads, audit.read_text().splitlines()) if e == "socket.bind"]
    assert ["127.0.0.1", port] in binds and ["0.0.0.0", port] not in binds, binds

    c = Config()
    bind_port = free_port()
    hubconfig.add_tokens_service(
        c,
        url=f"http://hub:{free_port()}",
        bind_url=f"http://127.0.0.1:{bind_port}",
        environment={"EGI_EXAMPLE": "1"},
    )
    (service,) = c.JupyterHub.services
    assert service["environment"]["EGI_EXAMPLE"] == "1"
    env = hub_environment(service, hub_api)
    env["PYTHONPATH"] = str(audit_dir)
    env["EGI_TEST_SOCKET_AUDIT"] = str(tmp_path / "bind.jsonl")
    child = ChildProcess("tokens", service["command"], tmp_path / "bind.log", env=env)
    child.start(cwd=tmp_path)
    try:
        child.wait_http(f"http://127.0.0.1:{bind_port}/services/tokens/", timeout=90)
    finally:
        child.stop()
    binds = [w for e, w in map(json.loads, (tmp_path / "bind.jsonl").read_text().splitlines())
             if e == "socket.bind"]  # fmt: skip
    assert binds == [["127.0.0.1", bind_port]], binds
