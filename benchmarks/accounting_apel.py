"""Figure: turning 100,000 stored sessions into APEL messages (time, peak memory, streaming).

Runs the export twice, on N and on N/10 sessions: peak memory must not grow with the number of
sessions (ratio ~1), and the time for N must stay under 10 s. Prints median and spread of
three runs. Usage: python benchmarks/accounting_apel.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import insert, update

from egi_notebooks.services.accounting import db
from egi_notebooks.services.accounting.apel import ApelRenderer, export
from egi_notebooks.services.accounting.dirq_queue import OutgoingQueue
from egi_notebooks.services.accounting.models import Session

T0 = 1_780_000_000


def fill(sessions, n: int) -> None:
    rows = [
        {
            "vmuuid": f"vm-{i}",
            "user": f"user{i % 5000}",
            "server_name": "",
            "primary_vo": f"vo{i % 7}.example.org",
            "flavor": "small",
            "image": "img:1",
            "cpu_request": 1.0,
            "memory_request": 2**31,
            "start_time": T0 + i,
            "last_seen": T0 + i + 3600,
            "end_time": T0 + i + 3600,
            "cpu_seconds": 100.0,
            "network_in": 2**30,
            "network_out": 2**29,
            "version": 1,
            "sent_version": 0,
        }  # fmt: skip
        for i in range(n)
    ]
    with sessions.begin() as s:
        for start in range(0, n, 10_000):
            s.execute(insert(Session), rows[start : start + 10_000])


def one_run(sessions, workdir: Path, run: int, trace: bool) -> tuple[float, int, int]:
    with sessions.begin() as s:
        s.execute(update(Session).values(sent_version=0))
    queue = OutgoingQueue(workdir / f"q{run}")
    renderer = ApelRenderer(site_name="BENCH", cloud_compute_service="bench")
    if trace:  # tracemalloc slows Python down several times: timed runs go without it
        tracemalloc.start()
    start = time.perf_counter()
    outcome = export(sessions, renderer, queue.add)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    return elapsed, peak, outcome.records


def measure(n: int, timed_runs: int) -> tuple[list[float], int]:
    """(export times of the untraced runs, peak memory of one traced run)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine, sessions = db.open_database(f"sqlite:///{tmp}/bench.sqlite")
        fill(sessions, n)
        times = []
        for run in range(timed_runs):
            elapsed, _, records = one_run(sessions, Path(tmp), run, trace=False)
            assert records == n, (records, n)
            times.append(elapsed)
        _, peak, _ = one_run(sessions, Path(tmp), timed_runs, trace=True)
        engine.dispose()
    return times, peak


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    small = max(1, n // 10)
    times, peak = measure(n, 3)
    _, small_peak = measure(small, 0)
    med, spread = statistics.median(times), max(times) - min(times)
    print(f"APEL export of {n} sessions: median {med:.2f} s (spread {spread:.2f} s, 3 runs), "
          f"{n / med:,.0f} records/s; target < 10 s: {'OK' if med < 10 else 'MISSED'}")  # fmt: skip
    print(f"peak traced memory: {peak / 2**20:.1f} MiB for {n} sessions, "
          f"{small_peak / 2**20:.1f} MiB for {small}")  # fmt: skip
    ratio = peak / small_peak
    print(f"memory ratio {n}/{small} sessions: {ratio:.2f} (streaming: ~1, not 10)")


if __name__ == "__main__":
    main()
