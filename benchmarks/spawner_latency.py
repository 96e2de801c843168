"""Spawn latency in the emulator: EGISpawner / plain KubeSpawner, same run (target <= 1.10).

Both spawn the same user with the same emulated cluster, interleaved so drift hits both;
each start() is a steady-state spawn (state loaded, reflectors running), followed by a
stop. Most of a start is kubespawner polling the pod with randomly jittered sleeps
(jupyterhub.utils.exponential_backoff); both spawners of a pair get the same random seed
(common random numbers), so the ratio shows EGISpawner's own cost, not jitter.
Prints the median, spread (min-max and interquartile range) and the ratio of medians.

    .venv/bin/python benchmarks/spawner_latency.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubespawner import KubeSpawner  # noqa: E402

from egi_notebooks.spawner import EGISpawner  # noqa: E402
from tests.harness.k8s import reset_kubespawner, running_emulator, use_emulator  # noqa: E402
from tests.unit.spawner.conftest import ALICE_STATE, FakeUser  # noqa: E402

COMMON = dict(namespace="hub", start_timeout=10, storage_pvc_ensure=True, storage_capacity="1Gi")


def make(cls, state):
    orm = SimpleNamespace(name="", server=None, user_options={})
    spawner = cls(_mock=True, user=FakeUser("alice", ALICE_STATE), orm_spawner=orm, **COMMON)
    if state:
        spawner.load_state(state)
    return spawner


async def one(cls, state):
    spawner = make(cls, state)
    await spawner.run_auth_state_hook(ALICE_STATE)
    t0 = time.perf_counter()
    await spawner.start()
    elapsed = time.perf_counter() - t0
    await spawner.stop()
    return elapsed, spawner.get_state()


def describe(name, xs):
    q = statistics.quantiles(xs, n=4)
    return (
        f"{name:12s} median {statistics.median(xs) * 1000:7.1f} ms  "
        f"min {min(xs) * 1000:6.1f}  max {max(xs) * 1000:6.1f}  IQR {(q[2] - q[0]) * 1000:6.1f} ms"
    )


async def main(runs: int) -> None:
    logging.disable(logging.WARNING)
    async with running_emulator() as cluster:
        use_emulator(cluster.url, tempfile.mkdtemp())
        states = {}
        for cls in (EGISpawner, KubeSpawner):  # warm-up: claims, Secret, reflectors
            _, states[cls] = await one(cls, None)
        times = {EGISpawner: [], KubeSpawner: []}
        for i in range(runs):
            order = (EGISpawner, KubeSpawner) if i % 2 else (KubeSpawner, EGISpawner)
            for cls in order:
                random.seed(i)
                elapsed, _ = await one(cls, states[cls])
                times[cls].append(elapsed)
        await reset_kubespawner()
        assert not cluster.k8s.validation_errors, cluster.k8s.validation_errors
    print(f"steady-state spawns in the emulator, {runs} each, interleaved")
    print(describe("EGISpawner", times[EGISpawner]))
    print(describe("KubeSpawner", times[KubeSpawner]))
    ratio = statistics.median(times[EGISpawner]) / statistics.median(times[KubeSpawner])
    print(f"ratio EGISpawner/KubeSpawner (medians): {ratio:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
