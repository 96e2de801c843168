"""Ports for the test harness's children, one range per pytest-xdist worker.

Every range is below the kernel's ephemeral range (see ``PortPicker``) and apart from the
demo's default internal range, so no worker, kernel or outgoing connection takes a port
another worker has picked; a port a test keeps closed stays closed.
"""

from __future__ import annotations

import os
import threading

from egi_notebooks.demo.app import DEMO_INTERNAL_PORTS
from egi_notebooks.demo.processes import PortPicker, ephemeral_port_range, parse_port_range

DEMO_BLOCK = 20  # ports a demo's hub, proxy and services need, with room to spare
DEMO_BLOCKS = 10  # demos one worker can have running at once


def worker_range(worker: str | None, count: int) -> tuple[int, int]:
    """``[low, high)`` of the worker named ``gwN`` of ``count`` (None: not under xdist)."""
    _, demo_high = parse_port_range(DEMO_INTERNAL_PORTS)
    first, end = demo_high + 1, ephemeral_port_range()[0]
    span = (end - first) // max(count, 1)
    if span < DEMO_BLOCK * DEMO_BLOCKS + 500:
        raise RuntimeError(
            f"{count} test workers do not fit in ports {first}-{end - 1}, between the demo's "
            f"range and the kernel's ephemeral range: run fewer (EGI_TEST_WORKERS)"
        )
    index = int(worker.removeprefix("gw")) if worker else 0
    return first + index * span, first + (index + 1) * span


_low, _high = worker_range(
    os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
)
_demo_low = _high - DEMO_BLOCK * DEMO_BLOCKS
free_port = PortPicker(_low, _demo_low)

_next_block = 0
_block_lock = threading.Lock()


def demo_port_block() -> str:
    """A ``LOW-HIGH`` for ``egi-notebooks demo --internal-ports``, apart from ``free_port``'s."""
    global _next_block
    with _block_lock:
        low = _demo_low + _next_block * DEMO_BLOCK
        _next_block = (_next_block + 1) % DEMO_BLOCKS
    return f"{low}-{low + DEMO_BLOCK - 1}"
