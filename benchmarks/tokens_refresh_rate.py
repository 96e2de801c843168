"""Refresh grants per hour for N running idle users.

Target: within 10 % of N x 3600 / (L - leeway). Compressed time: L = 30 s, so the
effective leeway is 15 s (half the lifetime) and every user is refreshed every 15 s by the
hub's background refresh, with no request from users or servers. Servers are one shared
tiny HTTP server (see _fake_spawner.py): the figure is about the hub and the provider.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _auth_hubs import egi_config, users  # noqa: E402

from tests.harness.hub import HubProcess, free_port  # noqa: E402
from tests.harness.login import login  # noqa: E402
from tests.harness.provider import ProviderProcess, make_provider_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--lifetime", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=120, help="measurement window")
    args = parser.parse_args()
    leeway = min(600, args.lifetime / 2)

    shared_port = free_port()
    shared = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(shared_port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workdir = Path(tempfile.mkdtemp(prefix="egi-bench-refresh-"))
    hub = HubProcess(
        workdir,
        env={
            "BENCH_SHARED_SERVER_PORT": str(shared_port),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
        },
    )
    provider = ProviderProcess()
    try:
        provider.start(
            make_provider_config(
                f"{hub.url}/hub/oauth_callback",
                f"{hub.url}/hub/login",
                users=users(args.users),
                access_token_lifetime=args.lifetime,
            )
        )
        hub.config = egi_config(
            provider,
            hub,
            """
            c.JupyterHub.spawner_class = "_fake_spawner.SharedServerSpawner"
            c.JupyterHub.concurrent_spawn_limit = 0
            c.JupyterHub.last_activity_interval = 3600
            """,
        )
        hub.start()

        def login_and_spawn(i: int) -> None:
            assert login(hub.url, f"user{i}").ok
            r = hub.api("POST", f"/users/user{i}@egi.eu/server")
            assert r.status_code in (201, 202), r.text

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(login_and_spawn, range(args.users)))
        for i in range(args.users):
            hub.wait_for_server(f"user{i}@egi.eu")
        print(f"{args.users} users logged in with running servers in {time.time() - started:.0f} s")
        time.sleep(args.lifetime)  # let the login-time tokens' schedule settle
        provider.reset_stats()
        time.sleep(args.seconds)
        stats = provider.stats()
    finally:
        hub.stop()
        provider.stop()
        shared.kill()
    grants = stats["token"].get("refresh_token", 0)
    per_hour = grants * 3600 / args.seconds
    formula = args.users * 3600 / (args.lifetime - leeway)
    print(
        f"users={args.users} lifetime={args.lifetime:.0f}s leeway={leeway:.0f}s "
        f"window={args.seconds:.0f}s refresh_grants={grants} invalid_grant={stats['invalid_grant']}"
    )
    print(
        f"refresh grants/hour measured {per_hour:.0f} vs N*3600/(L-leeway) = {formula:.0f}: "
        f"ratio {per_hour / formula:.3f} (target 0.90-1.10)"
    )


if __name__ == "__main__":
    main()
