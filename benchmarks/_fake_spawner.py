"""A spawner for load benchmarks only: every "server" is one shared tiny HTTP server.

Hundreds of real Jupyter servers do not fit on a 2-core machine; the token refresh figures
only need the hub to believe servers run. Never used by tests or the product.
"""

from __future__ import annotations

import os

from jupyterhub.spawner import Spawner


class SharedServerSpawner(Spawner):
    _running = False

    async def start(self) -> tuple[str, int]:
        self._running = True
        return "127.0.0.1", int(os.environ["BENCH_SHARED_SERVER_PORT"])

    async def poll(self) -> int | None:
        return None if self._running else 0

    async def stop(self, now: bool = False) -> None:
        self._running = False
