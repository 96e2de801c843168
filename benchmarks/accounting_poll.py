"""Figure: one reconciliation poll against a real hub with 2,000 users (time, API requests).

A real JupyterHub (with configurable-http-proxy) authenticates with EGICheckinAuthenticator
against the local OIDC provider; all N users sign in through the provider's form, so each has
its VO as a hub group and auth state as in production (the sign-ins are set-up, not measured:
12 to 25 a second here). ACTIVE of them get a running server (an instant spawner: what is
measured is the hub API and the collector, not Jupyter) whose state holds the primary-VO
annotation, as EGISpawner writes it. Printed: the first poll (every session new), and the
steady-state poll (median and spread of 5), with the number of hub API requests each needs;
the ratio of requests to users shows the pagination at work.
Usage: python benchmarks/accounting_poll.py [USERS] [ACTIVE]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from egi_notebooks.demo.accounts import demo_user, entitlement  # noqa: E402
from egi_notebooks.services.accounting import db  # noqa: E402
from egi_notebooks.services.accounting.collector import Collector  # noqa: E402
from egi_notebooks.services.accounting.store import Store  # noqa: E402
from egi_notebooks.services.hub import HubClient  # noqa: E402
from tests.harness.egi_hub import EGIHub  # noqa: E402
from tests.harness.hub import HubProcess  # noqa: E402
from tests.harness.login import login  # noqa: E402

INSTANT_SPAWNER = """
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from jupyterhub.spawner import Spawner

class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass

_server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
threading.Thread(target=_server.serve_forever, daemon=True).start()

class InstantSpawner(Spawner):
    async def start(self):
        return ("127.0.0.1", _server.server_address[1])
    async def poll(self):
        return None if self.server else 0
    async def stop(self, now=False):
        pass
    def get_state(self):
        # what EGISpawner keeps there: pod and the primary-VO annotation
        state = super().get_state()
        vo = f"vo{sum(map(ord, self.user.name)) % 7}.example.org"  # = the user's VO
        state.update(
            namespace="bench",
            pod_name=f"jupyter-{self.user.name}",
            annotations={"egi.eu/primary-vo": vo},
        )
        return state

c.JupyterHub.spawner_class = InstantSpawner
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.log_level = "WARN"
c.JupyterHub.cleanup_servers = False
"""


VOS = [f"vo{k}.example.org" for k in range(7)]


def logins(users: int) -> list[str]:
    return [f"user{i:05d}" for i in range(users)]


def accounts(users: int) -> dict[str, dict]:
    """Provider accounts: one VO each (the one the spawner's annotation names), an entitlement
    as Check-in releases it."""
    return {
        name: demo_user(name, [entitlement(VOS[sum(map(ord, f"{name}@egi.eu")) % 7])])
        for name in logins(users)
    }


def hub_config() -> str:
    return INSTANT_SPAWNER + f"c.EGICheckinAuthenticator.allowed_vos = {set(VOS)!r}\n"


def populate(hub: HubProcess, users: int, active: int) -> None:
    """Every user signs in through the provider's form (hub user, groups = VOs and auth
    state as in production); ``active`` of them get a server."""

    def sign_in(name: str) -> str:
        result = login(hub.url, name)
        assert result.ok, result.response.text[:300]
        return f"{name}@egi.eu"

    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(sign_in, logins(users)))
    print(f"{users} users signed in through the provider in {time.perf_counter() - t:.0f} s")

    def activate(name: str) -> None:
        r = hub.api("POST", f"/users/{quote(name)}/server", json={"profile": "small"})
        assert r.status_code in (201, 202), r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(activate, names[:active]))


async def poll_once(hub: HubProcess, store: Store, collector: Collector) -> tuple[float, int]:
    async with HubClient(hub.hub_api_url, hub.admin_token, timeout=60) as client:
        start = time.perf_counter()
        await collector.poll(client, store)
        return time.perf_counter() - start, client.requests_made


async def measure(hub: HubProcess, workdir: Path, active: int) -> None:
    engine, sessions = db.open_database(f"sqlite:///{workdir / 'bench.sqlite'}")
    store, collector = Store(sessions), Collector(hub_id="bench")
    first_time, first_requests = await poll_once(hub, store, collector)
    steady = [await poll_once(hub, store, collector) for _ in range(5)]
    with sessions() as s:
        from sqlalchemy import func, select

        from egi_notebooks.services.accounting.models import Session

        recorded = s.scalar(select(func.count()).select_from(Session))
    engine.dispose()
    assert recorded == active, (recorded, active)
    times = [t for t, _ in steady]
    print(f"first poll ({active} new sessions): {first_time:.2f} s, {first_requests} requests")
    print(
        f"steady poll: median {statistics.median(times):.2f} s "
        f"(spread {max(times) - min(times):.2f} s, 5 runs), {steady[0][1]} hub API requests"
    )
    return first_requests, steady[0][1]


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    active = int(sys.argv[2]) if len(sys.argv) > 2 else users
    with tempfile.TemporaryDirectory() as tmp:
        egi = EGIHub(Path(tmp) / "hub", hub_config(), users=accounts(users))
        hub = egi.hub
        try:
            egi.start()
            t = time.perf_counter()
            populate(hub, users, active)
            print(f"hub with {users} users, {active} running servers (set up in "
                  f"{time.perf_counter() - t:.0f} s)")  # fmt: skip
            first, steady = asyncio.run(measure(hub, Path(tmp), active))
            print(f"requests per user: first poll {first / users:.3f}, steady {steady / users:.4f}")
        finally:
            egi.stop()


if __name__ == "__main__":
    main()
