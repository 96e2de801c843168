"""Time from a hub-side refresh to the new token being visible through the tokens service.

Issue 4 figure: median under 100 ms. One user with a running (real, local) server; the
access-token lifetime is short so the hub's background refresh runs every few seconds.
Two pollers run side by side: one reads the hub's stored auth_state (admin API, the moment
the refresh is saved), the other asks the tokens service with the server's own token. The
figure is, per refresh, when the service first returned the new token minus when the hub
had stored it (both pollers' resolution is one request, a few ms; reported too).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _auth_hubs import spread  # noqa: E402

from tests.e2e.test_tokens_e2e import server_token, start_server, tokens_config  # noqa: E402
from tests.harness.egi_hub import EGIHub  # noqa: E402
from tests.harness.hub import free_port  # noqa: E402
from tests.harness.login import login  # noqa: E402

FAST_PASSES = "c.EGICheckinAuthenticator.background_refresh_max_interval = 1\n"


async def measure(egi: EGIHub, token: str, refreshes: int) -> tuple[list[float], list[float]]:
    stored_at: dict[str, float] = {}
    served_at: dict[str, float] = {}
    poll_ms: list[float] = []
    admin = {"Authorization": f"token {egi.hub.admin_token}"}
    mine = {"Authorization": f"token {token}"}
    user_url = f"{egi.hub.hub_api_url}/users/alice@egi.eu"
    async with httpx.AsyncClient(timeout=30) as client:

        async def watch_hub() -> None:
            while len(stored_at) < refreshes + 1:
                r = await client.get(user_url, headers=admin)
                stored_at.setdefault(r.json()["auth_state"]["access_token"], time.perf_counter())

        async def watch_service() -> None:
            while len(served_at) < refreshes + 1:
                started = time.perf_counter()
                r = await client.get(egi.service_url, headers=mine)
                poll_ms.append((time.perf_counter() - started) * 1000)
                served_at.setdefault(r.json()["access_token"], time.perf_counter())

        await asyncio.wait_for(asyncio.gather(watch_hub(), watch_service()), 600)
    first = next(iter(stored_at))  # the token already there when polling began
    delays = [
        max(0.0, (served_at[t] - stored_at[t]) * 1000)
        for t in stored_at
        if t != first and t in served_at
    ]
    return delays, poll_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--lifetime", type=float, default=6)
    args = parser.parse_args()
    egi = EGIHub(
        Path(tempfile.mkdtemp(prefix="egi-bench-visibility-")),
        tokens_config(free_port(), FAST_PASSES),
        access_token_lifetime=args.lifetime,
    )
    egi.service_url = f"{egi.hub.url}/services/tokens/token"
    egi.start()
    try:
        assert login(egi.hub.url, "alice").ok
        token = server_token(start_server(egi, "alice@egi.eu"))
        deadline = time.monotonic() + 30
        headers = {"Authorization": f"token {token}"}
        while httpx.get(egi.service_url, headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "tokens service not up"
            time.sleep(0.3)
        delays, poll_ms = asyncio.run(measure(egi, token, args.refreshes))
    finally:
        egi.stop()
    print(f"refreshes observed: {len(delays)}; one service request: {spread(poll_ms)} ms")
    print(f"refresh -> visible via tokens service, ms: {spread(delays)}")
    print(f"median {statistics.median(delays):.1f} ms (target < 100 ms)")


if __name__ == "__main__":
    main()
