"""`egi-notebooks demo` as a user runs it: a taken port, Ctrl-C, where its state goes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from egi_notebooks.demo.processes import parse_port_range, port_is_free
from tests.harness.browser import (
    ROOT,
    DemoProcess,
    describe,
    listening_ports,
    stop_and_check,
)
from tests.harness.login import login as sign_in
from tests.harness.ports import free_port

pytestmark = pytest.mark.e2e
PROBE_USER = "egi-notebooks-probe"  # the status service's user: its server starts ~5 s in


def wait_for_probe_server(demo: DemoProcess, timeout: float = 60) -> None:
    """Until the status probe's JupyterLab server runs: Ctrl-C then has a server to stop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        commands = [describe(pid) for pid in demo.descendants()]
        if any("jupyterhub-singleuser" in c for c in commands):
            return
        time.sleep(0.3)
    raise AssertionError(f"no single-user server started in {timeout:g} s:\n{demo.text}")


def test_run_demo_help_needs_no_set_up(tmp_path):
    venv = tmp_path / "no-venv-yet"
    result = subprocess.run(
        [str(ROOT / "run"), "demo", "--help"],
        env={**os.environ, "EGI_NOTEBOOKS_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: egi-notebooks demo ")
    assert "--state-dir" in result.stdout and "(default: 8000)" in result.stdout
    assert not venv.exists()  # nothing was set up


def test_refuses_a_taken_port_and_loses_nothing(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "keep.txt").write_text("an earlier demo's data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "egi_notebooks.cli", "demo", "--port", str(port)]
            + ["--state-dir", str(state), "--fresh"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "taken" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # --fresh did not wipe the state of a demo that never started
    assert (state / "keep.txt").read_text() == "an earlier demo's data"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo for the tests below, run from an empty directory; the last test stops it."""
    base = tmp_path_factory.mktemp("demo")
    (base / "cwd").mkdir()
    demo = DemoProcess(free_port(), base / "demo-state", cwd=base / "cwd").start()
    yield demo
    if demo.proc is not None and demo.proc.poll() is None:
        demo.kill()


def test_user_homes_live_in_the_state_dir(demo):
    """A server's home (JupyterLab workspaces, kernels' runtime files) must be demo state too."""
    wait_for_probe_server(demo)
    homes = {
        os.readlink(f"/proc/{pid}/cwd")
        for pid in demo.descendants()
        if "jupyterhub-singleuser" in describe(pid)
    }
    assert homes and all(h.startswith(str(demo.state_dir)) for h in homes), homes


def test_the_hub_proxy_api_and_services_listen_in_the_internal_port_range(demo):
    low, high = parse_port_range(demo.internal_ports)
    hubs = [pid for pid in demo.descendants() if "jupyterhub_config.py" in describe(pid)]
    assert len(hubs) == 1, hubs
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{hubs[0]}/environ").read_text().split("\0")
        if "=" in item
    )
    internal = {
        int(value)
        for name, value in environ.items()
        if name.endswith("_PORT") and name != "EGI_DEMO_PORT"
    }
    assert len(internal) == 5, environ  # hub, proxy API, tokens, status, accounting
    assert all(low <= port <= high for port in internal), (internal, demo.internal_ports)
    assert internal <= listening_ports(demo.descendants())


def test_a_bad_internal_port_range_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "egi_notebooks.cli", "demo", "--internal-ports", "20000-10000"]
        + ["--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "LOW must not be above HIGH" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


class SignedIn:
    """A demo user signed in through the demo's Check-in, calling the hub API as a browser
    does: with its cookies and the XSRF header the hub asks of such requests."""

    def __init__(self, demo: DemoProcess, login: str) -> None:
        self.url = demo.url
        result = sign_in(demo.url, login)
        assert result.ok, (result.response.status_code, result.response.text[:300])
        self.client = result.client

    def get(self, path: str) -> httpx.Response:
        return self.client.get(f"{self.url}{path}")

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        xsrf = [c.value for c in self.client.cookies.jar if c.name == "_xsrf"]
        assert xsrf, "the hub set no _xsrf cookie"
        headers = {"X-XSRFToken": xsrf[-1]}
        return self.client.request(method, f"{self.url}/hub/api{path}", headers=headers, **kw)


def test_the_demos_admin_reads_no_users_tokens_and_still_administers(demo):
    # the demo's token page says the refresh token never leaves the hub: as in production
    # (restrict_admin_role), not even to an admin
    alice = SignedIn(demo, "alice")
    assert alice.get("/hub/home").status_code == 200
    admin = SignedIn(demo, "admin")  # a hub admin by the manager entitlement
    assert admin.get("/hub/home").status_code == 200
    me = admin.api("GET", "/user")
    assert me.status_code == 200 and me.json()["admin"] is True, me.text[:300]
    r = admin.api("GET", "/users/alice@egi.eu")
    assert r.status_code == 200, r.text[:300]
    assert "auth_state" not in sorted(r.json())  # keys only: no token in a failure message
    assert "refresh_token" not in r.text and "access_token" not in r.text
    # nor through a token of the admin's own making
    minted = admin.api("POST", "/users/admin@egi.eu/tokens", json={"scopes": ["admin:auth_state"]})
    assert minted.status_code == 400, minted.text[:300]
    # and still administers, as in production: the admin page and the user list
    assert admin.get("/hub/admin").status_code == 200
    users = admin.api("GET", "/users")
    assert users.status_code == 200
    assert "alice@egi.eu" in {u["name"] for u in users.json()}
    assert all("auth_state" not in u for u in users.json())


def test_ctrl_c_stops_everything_and_state_stays_in_its_directory(demo):
    assert f"running at {demo.url}/" in demo.text
    assert str(demo.state_dir) in demo.text  # it names the directory
    for login in ("alice", "bob", "admin", "mallory"):
        assert f"  {login} " in demo.text
    for url in ("/hub/admin", "/services/status/", "/services/accounting/"):
        assert f"{demo.url}{url}" in demo.text  # the banner lists the pages to try
    assert "starting the local EGI Check-in" in demo.text  # it says what it does
    assert httpx.get(f"{demo.url}/hub/api/", timeout=5).status_code == 200
    wait_for_probe_server(demo)  # Ctrl-C with a JupyterLab server and its kernel running

    problems = stop_and_check(demo)
    assert not problems, "\n".join(problems)
    assert demo.text.rstrip().endswith("stopped"), demo.text[-500:]
    assert port_is_free(demo.port)
    assert list(demo.cwd.iterdir()) == []
    names = {p.name for p in demo.state_dir.iterdir()}
    assert {"jupyterhub.sqlite", "jupyterhub.log", "provider.log", "crypt_key"} <= names, names


def ignores_sigint(pid: int) -> bool:
    """Whether the process ignores SIGINT (its SigIgn mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False  # gone
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask, 16) >> (signal.SIGINT - 1) & 1)


def test_ctrl_c_works_when_started_from_a_script_in_the_background(tmp_path):
    # A shell script's `&` starts the demo with SIGINT ignored, and children inherit that:
    # the hub's SIGINT to its services would then be ignored and each stop would wait out
    # interrupt_timeout. What a user notices (Ctrl-C ends everything) follows from no process
    # of the demo ignoring SIGINT, which is checked directly instead of timing the stop.
    demo = DemoProcess(free_port(), tmp_path / "state", background=True).start()
    ignoring = [pid for pid in demo.descendants() if ignores_sigint(pid)]
    problems = stop_and_check(demo)
    assert not ignoring, [describe(pid) for pid in ignoring]
    assert not problems, "\n".join(problems)


def restarted(demo: DemoProcess) -> DemoProcess:
    """A second ``egi-notebooks demo`` in the same state directory, as a user reruns it."""
    again = DemoProcess(demo.port, demo.state_dir, cwd=demo.cwd)
    again.command.remove("--fresh")
    return again


def test_a_restart_in_the_same_state_dir_signs_users_in(tmp_path):
    first = DemoProcess(free_port(), tmp_path / "state").start()
    assert sign_in(first.url, "alice").ok
    problems = stop_and_check(first)
    assert not problems, "\n".join(problems)

    second = restarted(first).start()
    try:
        result = sign_in(second.url, "alice")
        assert result.ok, (result.response.status_code, result.response.text[:500])
    finally:
        problems = stop_and_check(second)
    assert not problems, "\n".join(problems)


def test_a_second_demo_in_the_same_state_dir_is_refused(tmp_path):
    first = DemoProcess(free_port(), tmp_path / "state").start()
    try:
        other_port = free_port()
        result = subprocess.run(
            [sys.executable, "-m", "egi_notebooks.cli", "demo", "--port", str(other_port)]
            + ["--state-dir", str(first.state_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert str(first.proc.pid) in result.stderr, result.stderr
        assert f"port {first.port}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert port_is_free(other_port)  # it started nothing
        assert first.hub_answers()  # and left the first one alone
        assert sign_in(first.url, "bob").ok
    finally:
        problems = stop_and_check(first)
    assert not problems, "\n".join(problems)
