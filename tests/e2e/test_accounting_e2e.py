"""Accounting against a real JupyterHub with real single-user servers, on SQLite and on a real
PostgreSQL server: durations, primary VO, flavor, probe left out, service killed and restarted.

The hub is configured as in production: EGICheckinAuthenticator against the local OIDC
provider, and the accounting service added with ``add_accounting_service`` (its documented
role; the database URL and ``EGICheckinAuthenticator.vo_priority`` reach it in its
environment). alice, bob and carol sign in through the provider's login form and get their hub
groups (their VOs) from their entitlements; alice is in two VOs, listed by the provider in the
other order than ``vo_priority``, so her primary VO shows that the priority reached the
accounting. The probe user is created as the status service creates it: through the hub API
with the status service's role, never signed in, no auth_state, marked by its group.

The single-user servers are local processes (no Kubernetes here). Without EGISpawner's pod
annotations the collector takes the flavor from the ``profile`` user option and the primary VO
from the user's groups by ``vo_priority``: the fallbacks it uses for servers without them.
EGISpawner's annotations path is covered by the z2jh rehearsal.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import secrets
import signal
import subprocess
import time
from urllib.parse import quote

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker
from traitlets.config import Config

from egi_notebooks.demo.accounts import demo_user, demo_users, entitlement
from egi_notebooks.hubconfig import add_accounting_service
from egi_notebooks.services.accounting import DB_URL_ENV, VO_PRIORITY_ENV, db
from egi_notebooks.services.accounting.collector import Collector, parse_hub_time
from egi_notebooks.services.accounting.models import Session
from egi_notebooks.services.accounting.store import Store
from egi_notebooks.services.hub import HubClient
from egi_notebooks.services.status import DEFAULT_PROBE_USER, PROBE_GROUP
from egi_notebooks.services.status.probe import Probe, ProbeConfig
from tests.harness.egi_hub import EGIHub
from tests.harness.hub import LOCAL_SPAWNER_CONFIG, HubProcess, free_port
from tests.harness.login import login
from tests.harness.postgres import postgres_or_skip
from tests.harness.provider import CERTIFIED
from tests.harness.waiting import wait_until as wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

POLL = 1.0
SERVICE_PORT = free_port()
VO_PRIORITY = ["vo.alpha.eu"]
# provider login -> VOs (entitlements, in the order the provider releases them)
ACCOUNTS = {
    "alice": ["vo.beta.eu", "vo.alpha.eu"],
    "bob": ["vo.beta.eu"],
    "carol": ["vo.gamma.eu"],
}
# hub user names: EGICheckinAuthenticator names users by voperson_id
ALICE, BOB, CAROL, ADMIN = "alice@egi.eu", "bob@egi.eu", "carol@egi.eu", "admin@egi.eu"
PROBE = DEFAULT_PROBE_USER
# an accounting service run outside the hub (its own process, as an operator may run it)
# and the status service, each with its own role
EXTERNAL_TOKEN = secrets.token_hex(16)
STATUS_TOKEN = secrets.token_hex(16)
# the image accounting knows for the small flavour (the operator's configuration)
SMALL_IMAGE = "registry.example.org/small:1"
# what any user can put in the options of their own spawn request
FORGED_OPTIONS = {
    "image": "attacker.example/any:1",
    "vo": "vo.gamma.eu",
    "primary_vo": "vo.gamma.eu",
}


def provider_users() -> dict:
    users = demo_users()  # with admin: manager of vo.notebooks.egi.eu, so a hub admin
    for name, vos in ACCOUNTS.items():
        users[name] = demo_user(name, [entitlement(vo) for vo in vos])
    return users


def hub_config(managed_db) -> str:
    allowed = {vo for vos in ACCOUNTS.values() for vo in vos} | {"vo.notebooks.egi.eu"}
    args = [f"--poll-interval={POLL}", "--Collector.hub_id=e2e-managed"]
    return (
        LOCAL_SPAWNER_CONFIG
        + f"""
from egi_notebooks.hubconfig import ACCOUNTING_SCOPES, add_accounting_service, status_scopes
c.JupyterHub.allow_named_servers = True
c.EGICheckinAuthenticator.allowed_vos = {allowed!r}
c.EGICheckinAuthenticator.vo_priority = {VO_PRIORITY!r}
# after vo_priority: the helper hands it to the service
add_accounting_service(
    c, url="http://127.0.0.1:{SERVICE_PORT}",
    db_url="sqlite:///{managed_db}", args={args!r},
)
c.JupyterHub.services.append({{"name": "accounting-external", "api_token": "{EXTERNAL_TOKEN}"}})
c.JupyterHub.load_roles.append(
    {{"name": "accounting-external", "scopes": ACCOUNTING_SCOPES,
      "services": ["accounting-external"]}}
)
c.JupyterHub.services.append({{"name": "status", "api_token": "{STATUS_TOKEN}"}})
c.JupyterHub.load_roles.append(
    {{"name": "status-service", "scopes": status_scopes({PROBE!r}), "services": ["status"]}}
)
"""
    )


def production_service(database_url: str, *args: str) -> dict:
    """The service entry ``add_accounting_service`` makes for this hub's vo_priority: the
    command and environment a hub runs the service with."""
    c = Config()
    c.EGICheckinAuthenticator.vo_priority = VO_PRIORITY
    add_accounting_service(c, db_url=database_url, args=args)
    (service,) = c.JupyterHub.services
    assert database_url not in " ".join(service["command"])
    return service


async def create_probe_user(hub: HubProcess) -> None:
    """As the status service does before each run, with its role."""
    config = ProbeConfig(user=PROBE, proxy_url=hub.url, token=STATUS_TOKEN, timeouts={})
    async with HubClient(hub.hub_api_url, STATUS_TOKEN, timeout=10) as client:
        await Probe(client, config, logging.getLogger("probe")).ensure_user()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hub")


@pytest.fixture(scope="module")
def egi(workdir):
    egi = EGIHub(workdir / "hub", provider_implementation=CERTIFIED, users=provider_users())
    egi.hub_config = hub_config(workdir / "managed.sqlite")
    try:
        egi.start()
        # users exist, with their VOs as hub groups, once they have signed in
        for name, vos in ACCOUNTS.items():
            result = login(egi.hub.url, name)
            assert result.ok, result.response.text[:500]
            model = egi.user_model(f"{name}@egi.eu")
            assert sorted(model["groups"]) == sorted(vos), model
            assert model["auth_state"]["vos"] == vos
        asyncio.run(create_probe_user(egi.hub))
        probe = egi.user_model(PROBE)
        assert probe["groups"] == [PROBE_GROUP] and not probe.get("auth_state"), probe
        yield egi
    finally:
        egi.stop()


@pytest.fixture(scope="module")
def hub(egi) -> HubProcess:
    return egi.hub


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


def user_path(user: str, name: str = "") -> str:
    return f"/users/{quote(user, safe='')}/servers/{quote(name, safe='')}"


def start_server(hub: HubProcess, user: str, name: str = "", **options) -> dict:
    r = hub.api("POST", user_path(user, name), json=options)
    assert r.status_code in (201, 202), r.text
    return hub.wait_for_server(user, name)


def stop_server(hub: HubProcess, user: str, name: str = "") -> tuple[float, float]:
    """(when the stop was asked for, when the hub had stopped the server): stopping a local
    server takes the hub a few seconds under load, and the session ends in between."""
    requested = time.time()
    r = hub.api("DELETE", user_path(user, name))
    assert r.status_code in (202, 204), r.text
    hub.wait_for_server(user, name, ready=False)
    return requested, time.time()


def sessions_of(sessions) -> dict[tuple[str, str], list[Session]]:
    found: dict[tuple[str, str], list[Session]] = {}
    with sessions() as s:
        for row in s.scalars(select(Session).order_by(Session.id)):
            found.setdefault((row.user, row.server_name), []).append(row)
    return found


async def test_sessions_from_a_real_hub(hub, database_urls, monkeypatch):
    databases = [db.open_database(url) for url in database_urls]
    stores = [Store(sessions) for _, sessions in databases]
    # the collector's vo_priority is its default: what add_accounting_service hands the service
    environment = production_service(database_urls[0])["environment"]
    monkeypatch.setenv(VO_PRIORITY_ENV, environment[VO_PRIORITY_ENV])
    collector = Collector(
        hub_id="e2e",
        flavors={"small": {"cpu": 0.5, "memory": "1Gi", "image": SMALL_IMAGE}, "large": {"cpu": 4}},
    )
    assert collector.vo_priority == VO_PRIORITY
    stop = asyncio.Event()
    polled = asyncio.Condition()
    polls = 0

    async def poll_loop(client: HubClient) -> None:
        nonlocal polls
        while not stop.is_set():
            for store in stores:
                await collector.poll(client, store)
            async with polled:
                polls += 1
                polled.notify_all()
            await asyncio.sleep(POLL)

    async def after_polls(predicate) -> None:
        async with asyncio.timeout(60), polled:
            await polled.wait_for(predicate)

    async def more_polls(n: int = 2) -> None:
        target = polls + n
        await after_polls(lambda: polls >= target)

    def all_see(*keys: tuple[str, str]) -> bool:
        return all(set(keys) <= set(sessions_of(sessions)) for _, sessions in databases)

    async with HubClient(hub.hub_api_url, EXTERNAL_TOKEN, timeout=10) as client:
        task = asyncio.create_task(poll_loop(client))
        # started in parallel: each local server takes seconds to come up
        alice, bob, probe = await asyncio.gather(
            # alice names another VO and image in her spawn request: neither is recorded
            asyncio.to_thread(start_server, hub, ALICE, profile="small", **FORGED_OPTIONS),
            asyncio.to_thread(start_server, hub, BOB, "gpu", profile="large"),
            asyncio.to_thread(start_server, hub, PROBE),
        )
        assert probe["ready"]
        await after_polls(lambda: all_see((ALICE, ""), (BOB, "gpu")))
        await more_polls()  # polls that saw the probe's server running too
        alice_end = await asyncio.to_thread(stop_server, hub, ALICE)
        await more_polls(1)
        bob_end, _ = await asyncio.gather(
            asyncio.to_thread(stop_server, hub, BOB, "gpu"),
            asyncio.to_thread(stop_server, hub, PROBE),
        )
        await more_polls()
        stop.set()
        await task
    for engine, sessions in databases:
        check_real_hub_sessions(sessions_of(sessions), alice, bob, alice_end, bob_end)
        engine.dispose()


def check_real_hub_sessions(found, alice, bob, alice_end, bob_end) -> None:
    assert set(found) == {(ALICE, ""), (BOB, "gpu")}  # the probe user is left out
    (a,) = found[(ALICE, "")]
    (b,) = found[(BOB, "gpu")]
    a_start = parse_hub_time(alice["started"])
    b_start = parse_hub_time(bob["started"])
    # alice's primary VO by vo_priority (the provider lists vo.beta.eu first), and the
    # operator's image of the flavour: not what her spawn request named
    assert (a.primary_vo, a.flavor, a.cpu_request, a.memory_request, a.image) == (
        "vo.alpha.eu", "small", 0.5, 2**30, SMALL_IMAGE,
    )  # fmt: skip
    assert (b.primary_vo, b.flavor, b.cpu_request) == ("vo.beta.eu", "large", 4.0)
    assert a.start_time == a_start and b.start_time == b_start
    # ended at the last poll that saw them: at most one poll interval (+ a poll's duration)
    # before the stop was asked for, and not after the hub had stopped them
    for session, (requested, stopped) in ((a, alice_end), (b, bob_end)):
        assert requested - POLL - 1.5 <= session.end_time <= stopped


def run_service(hub: HubProcess, database_url: str, log_path) -> subprocess.Popen:
    """The service's production command and environment, run outside the hub."""
    service = production_service(
        database_url,
        f"--poll-interval={POLL}",
        "--AccountingApp.serve_web=False",
        "--Collector.hub_id=e2e",
        "--log-level=DEBUG",
    )
    assert service["environment"][DB_URL_ENV] == database_url
    env = {
        **os.environ,
        **service["environment"],
        "JUPYTERHUB_API_URL": hub.hub_api_url,
        "JUPYTERHUB_API_TOKEN": EXTERNAL_TOKEN,
    }
    return subprocess.Popen(
        service["command"],
        env=env,
        stdout=open(log_path, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def test_service_killed_mid_session_and_restarted(hub, database_urls, tmp_path):
    """One service process per database, both SIGKILLed mid-session and restarted."""
    databases = [db.open_database(url) for url in database_urls]
    logs = [tmp_path / f"accounting-{i}.log" for i in range(len(database_urls))]
    services = [run_service(hub, url, log) for url, log in zip(database_urls, logs, strict=True)]

    def all_see(predicate) -> bool:
        return all(predicate(sessions) for _, sessions in databases)

    try:
        carol = start_server(hub, CAROL, profile="small")
        wait_for(lambda: all_see(lambda s: (CAROL, "") in sessions_of(s)), timeout=60)
        for service in services:
            service.send_signal(signal.SIGKILL)  # a real crash: no clean-up of any kind
            service.wait(10)
        # the session goes on unobserved for a while: polls the dead services miss
        time.sleep(2 * POLL)
        restarted = time.time()
        services = [
            run_service(hub, url, log) for url, log in zip(database_urls, logs, strict=True)
        ]
        wait_for(
            lambda: all_see(lambda s: (Store(s).last_complete_poll() or 0) >= restarted),
            timeout=60,
        )
        carol_asked, carol_stopped = stop_server(hub, CAROL)
        wait_for(lambda: all_see(lambda s: sessions_of(s)[(CAROL, "")][-1].end_time is not None))
    finally:
        for service, log in zip(services, logs, strict=True):
            service.send_signal(signal.SIGTERM)
            assert service.wait(15) == 0, log.read_text()
    for engine, sessions in databases:
        rows = sessions_of(sessions)[(CAROL, "")]
        engine.dispose()
        assert len(rows) == 1, "one session must give exactly one record"
        assert rows[0].start_time == parse_hub_time(carol["started"])
        assert carol_asked - POLL - 1.5 <= rows[0].end_time <= carol_stopped
        assert rows[0].primary_vo == "vo.gamma.eu"
    for log in logs:
        assert EXTERNAL_TOKEN not in log.read_text()


def managed_sessions(workdir) -> dict[tuple[str, str], list[Session]]:
    """What the hub-managed service has recorded so far (read from its database)."""
    engine = db.make_engine(f"sqlite:///{workdir / 'managed.sqlite'}")
    try:
        return sessions_of(sessionmaker(engine))
    except OperationalError:  # the service has not created its schema yet
        return {}
    finally:
        engine.dispose()


def test_managed_service_admin_view(egi, workdir):
    """The service run by the hub records a session; an admin sees it, a user may not."""
    hub = egi.hub
    start_server(hub, ALICE, "view", profile="small")
    wait_for(lambda: (ALICE, "view") in managed_sessions(workdir), timeout=60, what="the session")
    stop_server(hub, ALICE, "view")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    signed_in = login(hub.url, "admin")  # a hub admin by the manager entitlement
    assert signed_in.ok and egi.user_model(ADMIN)["admin"]
    admin = signed_in.client
    view = f"{hub.url}/services/accounting/"
    deadline = time.monotonic() + 30
    while True:
        r = admin.get(f"{view}?from={today}&to={today}&format=csv", follow_redirects=True)
        if r.status_code == 200 and ALICE in r.text or time.monotonic() > deadline:
            break
        time.sleep(1)  # the session ends in the report at the service's next poll
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    alice = [row for row in rows if row["user"] == ALICE]
    assert alice and alice[0]["vo"] == "vo.alpha.eu" and float(alice[0]["wall_hours"]) > 0
    page = admin.get(f"{view}?from={today}&to={today}", follow_redirects=True)
    assert page.status_code == 200 and "vo.alpha.eu" in page.text
    assert admin.get(f"{view}?from=nonsense", follow_redirects=True).status_code == 400
    user = login(hub.url, "bob")
    assert user.ok
    assert user.client.get(view, follow_redirects=True).status_code == 403
