"""The status service as a real hub-managed service, probing real single-user servers.

One hub (with configurable-http-proxy) authenticating with EGICheckinAuthenticator against
the local OIDC provider, as in production, runs several status services (each added with
``add_status_service``, so each has the documented role), each probing its own probe user.
The probe users never sign in with the provider: like the production probe user they are
created by the status service through the hub API and have no auth_state. A small spawner
subclass makes some users' servers fail in a given way:

- ``status``            healthy: jupyter-server + ipykernel, the default checksum code
- ``status-failspawn``  the spawner fails (raises in start)
- ``status-notready``   the server process never listens
- ``status-badkernel``  the kernel process dies at start-up (broken ipykernel_launcher)
- ``status-raises``     the probe code raises
- ``status-stale``      never runs; its history holds an OK result three hours old
- ``status-notoken``    the token Secret is not mounted where the probe looks
- ``status-tokensdown`` the tokens service cannot be reached from the notebook
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from egi_notebooks.services.status import PROBE_GROUP
from egi_notebooks.services.status.check import main as check_main
from tests.harness.egi_hub import EGIHub
from tests.harness.hub import LOCAL_SPAWNER_CONFIG, HubProcess, free_port
from tests.harness.provider import CERTIFIED

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

PROBES = {
    # service name -> (probe user, extra service args)
    "status": (
        "probe-ok",
        [
            "--StatusApp.check_home=~",
            "--StatusApp.token_file={workdir}/probe-token-volume/access_token",
            "--StatusApp.token_url={hub_url}/services/tokens/token",
        ],
    ),
    "status-failspawn": ("probe-failspawn", []),
    "status-notready": ("probe-notready", ["--StatusApp.timeouts={'spawn': 4}"]),
    "status-badkernel": ("probe-badkernel", ["--StatusApp.timeouts={'kernel': 6}"]),
    "status-raises": ("probe-raises", ["--StatusApp.code=raise RuntimeError('probe boom')"]),
    "status-stale": ("probe-stale", []),
    "status-notoken": ("probe-notoken", ["--StatusApp.token_file=/nonexistent-egi/access_token"]),
    "status-tokensdown": (
        "probe-tokensdown",
        [
            "--StatusApp.token_url=http://127.0.0.1:{closed_port}/services/tokens/token",
        ],
    ),
}

# The spawner runs local processes (the test has no Kubernetes); it only models failures.
SPAWNER = """
import sys
from jupyterhub.spawner import SimpleLocalProcessSpawner

LIGHT = {{
    "jupyterlab": False, "jupyter_lsp": False, "jupyter_server_terminals": False,
    "notebook_shim": False,
}}

class ProbeTestSpawner(SimpleLocalProcessSpawner):
    # makes some probe users' servers fail in a chosen way
    async def start(self):
        name = self.user.name
        if name == "probe-failspawn":
            raise RuntimeError("no resources left for this server")
        elif name == "probe-notready":
            self.cmd = [sys.executable, "-c", "import time; time.sleep(600)"]
        elif name == "probe-badkernel":
            self.environment = {{"PYTHONPATH": {broken!r}}}
        if name != "probe-ok":
            # lighter servers (no lab) for the failure cases: the suite stays fast
            self.args = self.args + ["--ServerApp.jpserver_extensions=" + repr(LIGHT)]
        return await super().start()

c.JupyterHub.spawner_class = ProbeTestSpawner
"""


def service_config(workdir, hub: HubProcess) -> str:
    closed_port = free_port()  # nothing listens there: a tokens service that is down
    lines = [
        "from egi_notebooks.hubconfig import add_status_service, add_tokens_service",
        f"add_tokens_service(c, url='http://127.0.0.1:{free_port()}')",
    ]
    for service, (user, extra) in PROBES.items():
        args = [
            "--StatusApp.first_run_delay=-1",
            f"--StatusApp.history_file={workdir / (service + '.json')}",
            "--StatusApp.request_timeout=10",
            *(
                arg.replace("{workdir}", str(workdir))
                .replace("{hub_url}", hub.url)
                .replace("{closed_port}", str(closed_port))
                for arg in extra
            ),
        ]
        # the documented helper: the service with its least-privilege role (no admin)
        lines.append(
            f"add_status_service(c, url='http://127.0.0.1:{free_port()}', name={service!r}, "
            f"proxy_url={hub.url!r}, probe_user={user!r}, args={args!r})"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def egi(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("status-hub")
    broken = workdir / "broken-kernel"
    broken.mkdir()
    (broken / "ipykernel_launcher.py").write_text("raise SystemExit('kernel broken on purpose')\n")
    # the probe-ok server's "mounted token Secret": a directory without a token, as for the
    # probe user under EGISpawner (it never signed in, its Secret has no keys)
    (workdir / "probe-token-volume").mkdir()
    # an OK result from three hours ago: stale for a one-hour interval
    old = time.time() - 3 * 3600
    (workdir / "status-stale.json").write_text(
        json.dumps(
            {
                "runs": [
                    {
                        "started": old - 10,
                        "finished": old,
                        "status": "OK",
                        "message": "fine back then",
                        "phases": {"spawn": 5.0},
                    }
                ],
                "counts": {"OK": 1},
            }
        )
    )
    egi = EGIHub(workdir / "hub", provider_implementation=CERTIFIED)
    egi.hub_config = (
        LOCAL_SPAWNER_CONFIG + SPAWNER.format(broken=str(broken)) + service_config(workdir, egi.hub)
    )
    try:
        egi.start()
        wait_for_services(egi.hub)
        yield egi
    finally:
        egi.stop()


@pytest.fixture(scope="module")
def hub(egi) -> HubProcess:
    return egi.hub


def wait_for_services(hub: HubProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pending = set(PROBES)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            try:
                if httpx.get(svc(hub, name, "status.json"), timeout=2).status_code == 200:
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    assert not pending, f"services not up: {pending}\n{hub.log_tail()}"


def svc(hub: HubProcess, name: str, path: str = "") -> str:
    return f"{hub.url}/services/{name}/{path}"


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    """The samples of a Prometheus text exposition by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run_now(hub: HubProcess, name: str, timeout: float = 120) -> dict:
    r = httpx.post(svc(hub, name, "run?wait=1"), headers=hub.api_headers(), timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()["result"]


SERVER_API_SHUTDOWN = "Shutting down on /api/shutdown request."


def no_server(hub: HubProcess, user: str) -> None:
    model = hub.api("GET", f"/users/{user}").json()
    assert model["servers"] == {}, model


def test_healthy_run_stops_a_leftover_server_and_is_ok(hub):
    # a server left running (as after a crash of the service) is stopped first
    hub.api("POST", "/users/probe-ok").raise_for_status()
    hub.api("POST", "/users/probe-ok/server").raise_for_status()
    hub.wait_for_server("probe-ok")
    shutdowns = hub.log().count(SERVER_API_SHUTDOWN)

    result = run_now(hub, "status")
    assert result["status"] == "OK", result
    # the probe's least-privilege token may ask its server to shut down (kernels cleaned up
    # by the server itself) before the hub stops it; the leftover server got the hub's stop
    assert hub.log().count(SERVER_API_SHUTDOWN) == shutdowns + 1, hub.log_tail()
    assert list(result["phases"]) == [
        "user",
        "cleanup",
        "spawn",
        "kernel",
        "execute",
        "home",
        "token",
        "shutdown",
        "stop",
    ]
    assert all(v > 0 for v in result["phases"].values())
    no_server(hub, "probe-ok")
    # the token check reached the tokens service from the kernel with the server's token, and
    # the service asked the hub's access-token endpoint (so its role works): 404, no token
    # for a user who never signed in
    access_token_call = r"404 [A-Z]+ /hub/api/egi-notebooks/users/probe-ok/access-token \(tokens@"
    assert re.search(access_token_call, hub.log()), hub.log_tail()
    # the probe user is marked for accounting, and is no admin
    model = hub.api("GET", "/users/probe-ok").json()
    assert PROBE_GROUP in model["groups"]
    assert model["admin"] is False
    # the production case: the hub runs the Check-in authenticator and the probe user never
    # signed in with the provider (no auth_state, so no tokens to refresh or deliver)
    info = hub.api("GET", "/info").json()
    assert info["authenticator"]["class"].endswith("EGICheckinAuthenticator"), info
    assert not model.get("auth_state"), model

    status = httpx.get(svc(hub, "status", "status.json")).json()
    assert status["code"] == "OK" and status["msg"] and status["time"] > time.time() - 120
    assert status["phases"] == pytest.approx(result["phases"], abs=1e-3)
    page = httpx.get(svc(hub, "status")).text
    assert ">OK</span>" in page and "Recent runs" in page and "<svg" in page
    response = httpx.get(svc(hub, "status", "metrics"))
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    metrics = metric_samples(response.text)
    assert metrics[("egi_notebooks_status", frozenset())] == 0
    assert ("egi_notebooks_status_phase_duration_seconds", frozenset({("phase", "execute")})) in (
        metrics
    )
    assert metrics[("egi_notebooks_status_runs_total", frozenset({("status", "OK")}))] == 1
    check = subprocess.run(
        [sys.executable, "-m", "egi_notebooks.cli", "check-status", svc(hub, "status")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout
    assert check.stdout.startswith("OK - notebook ran code successfully")
    assert " | user=" in check.stdout and " execute=" in check.stdout


FAILURES = [
    # service, probe user, failed phase, part of the reason
    ("status-failspawn", "probe-failspawn", "spawn", "no resources left"),
    ("status-notready", "probe-notready", "spawn", "timed out after 4s"),
    ("status-badkernel", "probe-badkernel", "kernel", "timed out after 6s waiting for"),
    ("status-raises", "probe-raises", "execute", "RuntimeError: probe boom"),
    ("status-notoken", "probe-notoken", "token", "token directory /nonexistent-egi is not mounted"),
    ("status-tokensdown", "probe-tokensdown", "token", "unreachable: [Errno 111]"),
]


async def test_failures_are_critical_naming_the_phase(hub):
    async with httpx.AsyncClient(headers=hub.api_headers(), timeout=120) as client:
        # no marker group yet: the services, probing at the same time, all try to create it
        group = f"{hub.hub_api_url}/groups/{PROBE_GROUP}"
        assert (await client.delete(group)).status_code in (204, 404)
        # the services probe at the same time: the test takes as long as the slowest
        responses = await asyncio.gather(
            *(client.post(svc(hub, service, "run?wait=1")) for service, *_ in FAILURES)
        )
        for (service, user, phase, reason), response in zip(FAILURES, responses, strict=True):
            result = response.json()["result"]
            assert result["status"] == "CRITICAL", result
            assert result["phase"] == phase, result
            assert result["message"].startswith(f"{phase} failed"), result
            assert reason in result["message"], result
            model = (await client.get(f"{hub.hub_api_url}/users/{user}")).json()
            assert model["servers"] == {}, model
            assert PROBE_GROUP in model["groups"], model
            status = (await client.get(svc(hub, service, "status.json"))).json()
            assert status["code"] == "CRITICAL" and status["phase"] == phase
    for service, _, phase, _ in FAILURES:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "egi_notebooks.cli",
            "check-status",
            svc(hub, service),
            stdout=asyncio.subprocess.PIPE,
        )
        out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
        assert proc.returncode == 2, out
        assert out.startswith(f"CRITICAL - {phase} failed")


def test_stale_result_is_unknown_everywhere(hub, capsys):
    status = httpx.get(svc(hub, "status-stale", "status.json")).json()
    assert status["code"] == "UNKNOWN" and "stale" in status["msg"]
    page = httpx.get(svc(hub, "status-stale")).text
    assert ">UNKNOWN</span>" in page and "3.0 h ago" in page
    metrics = metric_samples(httpx.get(svc(hub, "status-stale", "metrics")).text)
    assert metrics[("egi_notebooks_status", frozenset())] == 3
    assert check_main([svc(hub, "status-stale")]) == 3
    assert capsys.readouterr().out.startswith("UNKNOWN - stale result")


async def test_concurrent_posts_start_one_run(hub):
    async with httpx.AsyncClient(headers=hub.api_headers(), timeout=60) as client:
        before = (await client.get(svc(hub, "status-notready", "metrics"))).text
        responses = await asyncio.gather(
            *(client.post(svc(hub, "status-notready", "run")) for _ in range(6))
        )
        assert [r.status_code for r in responses] == [202] * 6
        assert sum(r.json()["started"] for r in responses) == 1
        for _ in range(300):  # until the run is over (bounded: 60 s)
            status = (await client.get(svc(hub, "status-notready", "status.json"))).json()
            if not status["running"]:
                break
            await asyncio.sleep(0.2)
        after = (await client.get(svc(hub, "status-notready", "metrics"))).text
    critical = ("egi_notebooks_status_runs_total", frozenset({("status", "CRITICAL")}))
    count = [int(metric_samples(text)[critical]) for text in (before, after)]
    assert count[1] == count[0] + 1
    # one spawn request per run (access-log lines: "<code> POST <path> (<who>")
    spawns = re.findall(r"\d{3} POST /hub/api/users/probe-notready/server \(", hub.log())
    assert len(spawns) == count[1]


def test_run_needs_an_admin_token(hub):
    assert httpx.post(svc(hub, "status", "run")).status_code == 403
    hub.api("POST", "/users/someone").raise_for_status()
    token = hub.api("POST", "/users/someone/tokens", json={}).json()["token"]
    r = httpx.post(svc(hub, "status", "run"), headers={"Authorization": f"token {token}"})
    assert r.status_code == 403
    assert httpx.get(svc(hub, "status", "status.json")).json()["running"] is False
