"""Accounting against a real JupyterHub with real single-user servers, on SQLite and on a real
PostgreSQL server: durations, primary VO, flavor, probe left out, service killed and restarted.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import select

from egi_notebooks.hubconfig import ACCOUNTING_SCOPES
from egi_notebooks.services.accounting import db
from egi_notebooks.services.accounting.collector import Collector
from egi_notebooks.services.accounting.models import Session
from egi_notebooks.services.accounting.store import Store
from egi_notebooks.services.hub import HubClient
from egi_notebooks.services.status import PROBE_GROUP
from tests.harness.hub import LOCAL_SPAWNER_CONFIG, HubProcess, free_port
from tests.harness.postgres import postgres_or_skip

pytestmark = pytest.mark.e2e

TOKEN = secrets.token_hex(16)
CONFIG = (
    LOCAL_SPAWNER_CONFIG
    + f"""
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.enable_auth_state = True
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.services.append({{"name": "accounting", "api_token": "{TOKEN}"}})
c.JupyterHub.load_roles.append(
    {{"name": "accounting", "scopes": {ACCOUNTING_SCOPES!r}, "services": ["accounting"]}}
)
"""
)
POLL = 1.0
SERVICE_PORT = free_port()


def managed_service_config(workdir) -> str:
    """The same service run BY the hub (command + url), with its admin view."""
    command = [
        sys.executable, "-m", "egi_notebooks.cli", "accounting",
        f"--db-url=sqlite:///{workdir / 'managed.sqlite'}", f"--poll-interval={POLL}",
        "--Collector.hub_id=e2e-managed", "--Collector.vo_priority=vo.alpha.eu",
    ]  # fmt: skip
    return f"""
c.Authenticator.admin_users = {{"admin"}}
for service in c.JupyterHub.services:
    if service["name"] == "accounting":
        service.update({{
            "url": "http://127.0.0.1:{SERVICE_PORT}",
            "command": {command!r},
            "oauth_no_confirm": True,
        }})
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub")
    hub = HubProcess(workdir, CONFIG + managed_service_config(workdir)).start()
    # hub groups = VOs, as EGICheckinAuthenticator keeps them (alice's primary VO by priority)
    for name, groups in {
        "alice": ["vo.beta.eu", "vo.alpha.eu"],
        "bob": ["vo.beta.eu"],
        "carol": ["vo.gamma.eu"],
        "probe": ["vo.alpha.eu", PROBE_GROUP],
    }.items():
        assert hub.api("POST", f"/users/{name}").status_code in (201, 409)
        for group in groups:
            hub.api("POST", f"/groups/{group}")
            r = hub.api("POST", f"/groups/{group}/users", json={"users": [name]})
            assert r.status_code == 200, r.text
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def pg_server():
    server = postgres_or_skip()
    yield server
    server.stop()


@pytest.fixture
def database_urls(tmp_path, pg_server) -> list[str]:
    """SQLite and a real PostgreSQL, both fed by the SAME hub sessions in one test: real
    single-user servers are the slow part, so each is started once for both databases."""
    return [f"sqlite:///{tmp_path / 'accounting.sqlite'}", pg_server.create_database()]


def start_server(hub: HubProcess, user: str, name: str = "", **options) -> float:
    r = hub.api("POST", f"/users/{user}/servers/{name}", json=options)
    assert r.status_code in (201, 202), r.text
    server = hub.wait_for_server(user, name)
    return server


def stop_server(hub: HubProcess, user: str, name: str = "") -> tuple[float, float]:
    """(when the stop was asked for, when the hub had stopped the server): stopping a local
    server takes the hub a few seconds under load, and the session ends in between."""
    requested = time.time()
    r = hub.api("DELETE", f"/users/{user}/servers/{name}")
    assert r.status_code in (202, 204), r.text
    hub.wait_for_server(user, name, ready=False)
    return requested, time.time()


def sessions_of(sessions) -> dict[tuple[str, str], list[Session]]:
    found: dict[tuple[str, str], list[Session]] = {}
    with sessions() as s:
        for row in s.scalars(select(Session).order_by(Session.id)):
            found.setdefault((row.user, row.server_name), []).append(row)
    return found


async def test_sessions_from_a_real_hub(hub, database_urls):
    databases = [db.open_database(url) for url in database_urls]
    stores = [Store(sessions) for _, sessions in databases]
    collector = Collector(
        hub_id="e2e",
        flavors={"small": {"cpu": 0.5, "memory": "1Gi"}, "large": {"cpu": 4}},
        vo_priority=["vo.alpha.eu"],
    )
    stop = asyncio.Event()

    async def poll_loop(client: HubClient) -> None:
        while not stop.is_set():
            for store in stores:
                await collector.poll(client, store)
            await asyncio.sleep(POLL)

    async with HubClient(hub.hub_api_url, TOKEN, timeout=10) as client:
        task = asyncio.create_task(poll_loop(client))
        # started in parallel: each local server takes seconds to come up
        alice, bob, probe = await asyncio.gather(
            asyncio.to_thread(start_server, hub, "alice", profile="small"),
            asyncio.to_thread(start_server, hub, "bob", "gpu", profile="large"),
            asyncio.to_thread(start_server, hub, "probe"),
        )
        assert probe["ready"]
        await asyncio.sleep(2 * POLL)
        alice_end = await asyncio.to_thread(stop_server, hub, "alice")
        await asyncio.sleep(POLL)
        bob_end, _ = await asyncio.gather(
            asyncio.to_thread(stop_server, hub, "bob", "gpu"),
            asyncio.to_thread(stop_server, hub, "probe"),
        )
        await asyncio.sleep(2 * POLL)
        stop.set()
        await task
    for engine, sessions in databases:
        check_real_hub_sessions(sessions_of(sessions), alice, bob, alice_end, bob_end)
        engine.dispose()


def check_real_hub_sessions(found, alice, bob, alice_end, bob_end) -> None:
    assert set(found) == {("alice", ""), ("bob", "gpu")}  # the probe user is left out
    (a,) = found[("alice", "")]
    (b,) = found[("bob", "gpu")]
    a_start = _epoch(alice["started"])
    b_start = _epoch(bob["started"])
    assert (a.primary_vo, a.flavor, a.cpu_request, a.memory_request) == (
        "vo.alpha.eu", "small", 0.5, 2**30,
    )  # fmt: skip
    assert (b.primary_vo, b.flavor, b.cpu_request) == ("vo.beta.eu", "large", 4.0)
    assert a.start_time == a_start and b.start_time == b_start
    # ended at the last poll that saw them: at most one poll interval (+ a poll's duration)
    # before the stop was asked for, and not after the hub had stopped them
    for session, (requested, stopped) in ((a, alice_end), (b, bob_end)):
        assert requested - POLL - 1.5 <= session.end_time <= stopped


def _epoch(iso: str) -> int:
    from egi_notebooks.services.accounting.collector import parse_hub_time

    return parse_hub_time(iso)


def run_service(hub: HubProcess, database_url: str, log_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "JUPYTERHUB_API_URL": hub.hub_api_url,
        "JUPYTERHUB_API_TOKEN": TOKEN,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "egi_notebooks.cli",
            "accounting",
            f"--db-url={database_url}",
            f"--poll-interval={POLL}",
            "--AccountingApp.serve_web=False",
            "--Collector.hub_id=e2e",
            "--Collector.vo_priority=vo.alpha.eu",
            "--log-level=DEBUG",
        ],  # fmt: skip
        env=env,
        stdout=open(log_path, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(predicate)


def test_service_killed_mid_session_and_restarted(hub, database_urls, tmp_path):
    """One service process per database, both SIGKILLed mid-session and restarted."""
    databases = [db.open_database(url) for url in database_urls]
    logs = [tmp_path / f"accounting-{i}.log" for i in range(len(database_urls))]
    services = [run_service(hub, url, log) for url, log in zip(database_urls, logs, strict=True)]

    def all_see(predicate) -> bool:
        return all(predicate(sessions) for _, sessions in databases)

    try:
        carol = start_server(hub, "carol", profile="small")
        wait_for(lambda: all_see(lambda s: ("carol", "") in sessions_of(s)), timeout=60)
        for service in services:
            service.send_signal(signal.SIGKILL)  # a real crash: no clean-up of any kind
            service.wait(10)
        time.sleep(2 * POLL)
        restarted = time.time()
        services = [
            run_service(hub, url, log) for url, log in zip(database_urls, logs, strict=True)
        ]
        wait_for(
            lambda: all_see(lambda s: (Store(s).last_complete_poll() or 0) >= restarted),
            timeout=60,
        )
        carol_asked, carol_stopped = stop_server(hub, "carol")
        wait_for(lambda: all_see(lambda s: sessions_of(s)[("carol", "")][-1].end_time is not None))
    finally:
        for service, log in zip(services, logs, strict=True):
            service.send_signal(signal.SIGTERM)
            assert service.wait(15) == 0, log.read_text()
    for engine, sessions in databases:
        rows = sessions_of(sessions)[("carol", "")]
        engine.dispose()
        assert len(rows) == 1, "one session must give exactly one record"
        assert rows[0].start_time == _epoch(carol["started"])
        assert carol_asked - POLL - 1.5 <= rows[0].end_time <= carol_stopped
        assert rows[0].primary_vo == "vo.gamma.eu"
    for log in logs:
        assert TOKEN not in log.read_text()


def login(hub: HubProcess, name: str) -> httpx.Client:
    client = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=30)
    page = client.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    # not followed: the default redirect after login would spawn the user's server
    r = client.post(
        "/hub/login",
        data={"username": name, "password": "x", "_xsrf": xsrf},
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    return client


def test_managed_service_admin_view(hub, tmp_path):
    """The service run by the hub records a session; an admin sees it, a user may not."""
    start_server(hub, "alice", "view", profile="small")
    time.sleep(3 * POLL)
    stop_server(hub, "alice", "view")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    admin = login(hub, "admin")
    deadline = time.monotonic() + 30
    while True:
        r = admin.get(f"/services/accounting/?from={today}&to={today}&format=csv")
        if r.status_code == 200 and "alice" in r.text or time.monotonic() > deadline:
            break
        time.sleep(1)  # the service may still be starting (imports take a while here)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    alice = [row for row in rows if row["user"] == "alice"]
    assert alice and alice[0]["vo"] == "vo.alpha.eu" and float(alice[0]["wall_hours"]) > 0
    page = admin.get(f"/services/accounting/?from={today}&to={today}")
    assert page.status_code == 200 and "vo.alpha.eu" in page.text
    assert admin.get("/services/accounting/?from=nonsense").status_code == 400
    user = login(hub, "bob")
    assert user.get("/services/accounting/").status_code == 403
