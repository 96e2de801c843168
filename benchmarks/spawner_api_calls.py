"""Kubernetes API calls per steady-state spawn, with 10,000 claims in the namespace.

EGISpawner (claim name remembered in state, token Secret replaced in one call) against the
older egi-notebooks-hub approach (list every claim to find the user's by annotation, read
the token Secret, replace it), on the same emulator. Reflector traffic (the shared pod and
event watches, started once per hub) is excluded from both. Prints the counts and ratio.

    .venv/bin/python benchmarks/spawner_api_calls.py [--claims 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
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


class OlderHubSpawner(KubeSpawner):
    """The older egi-notebooks-hub behaviour, re-stated: scan claims, read+replace Secret."""

    async def load_user_options(self):
        await super().load_user_options()
        claims = await self.api.list_namespaced_persistent_volume_claim(self.namespace)
        for claim in claims.items:
            if (claim.metadata.annotations or {}).get("hub.jupyter.org/username") == self.user.name:
                self.pvc_name = claim.metadata.name
                break
        secret = await self.api.read_namespaced_secret("access-token-alice", self.namespace)
        secret.data = {"access_token": "QVQ="}
        await self.api.replace_namespaced_secret("access-token-alice", self.namespace, secret)


def make(cls, **config):
    user = FakeUser("alice", ALICE_STATE)
    orm = SimpleNamespace(name="", server=None, user_options={})
    return cls(_mock=True, user=user, orm_spawner=orm, namespace="hub", start_timeout=10, **config)


async def steady_state_calls(cluster, cls, runs):
    spawner = make(cls)
    await spawner.run_auth_state_hook(ALICE_STATE)
    await spawner.start()  # first spawn: creates claim/Secret, starts the reflectors
    await spawner.stop()
    state = spawner.get_state()
    counts, lists, seconds = [], [], []
    for _ in range(runs):
        spawner = make(cls)
        spawner.load_state(state)
        await spawner.run_auth_state_hook(ALICE_STATE)
        before = len(cluster.k8s.calls)
        t0 = time.perf_counter()
        await spawner.start()
        seconds.append(time.perf_counter() - t0)
        calls = [c for c in cluster.k8s.calls[before:] if c.verb != "watch"]
        calls = [c for c in calls if not (c.verb == "list" and c.plural in ("pods", "events"))]
        counts.append(len(calls))
        lists.append(sum(c.verb == "list" for c in calls))
        await spawner.stop()
    return counts, lists, seconds, [(c.verb, c.plural) for c in calls]


async def main(claims: int, runs: int) -> None:
    async with running_emulator(validate=False) as cluster:
        use_emulator(cluster.url, tempfile.mkdtemp())
        for i in range(claims):
            meta = {
                "name": f"claim-{i:05d}",
                "labels": {"component": "singleuser-storage"},
                "annotations": {"hub.jupyter.org/username": f"user{i}"},
            }
            cluster.k8s.put_object("persistentvolumeclaims", {"metadata": meta}, "hub")
        cluster.k8s.put_object("secrets", {"metadata": {"name": "access-token-alice"}}, "hub")
        results = {}
        for name, cls in (("EGISpawner", EGISpawner), ("older egi-notebooks-hub", OlderHubSpawner)):
            results[name] = await steady_state_calls(cluster, cls, runs)
            await reset_kubespawner()
            use_emulator(cluster.url, tempfile.mkdtemp())
    print(f"claims in namespace: {claims}; steady-state spawns measured: {runs} each")
    for name, (counts, lists, seconds, last) in results.items():
        print(
            f"{name:24s} API calls/spawn median {statistics.median(counts)} "
            f"(min {min(counts)}, max {max(counts)}); list calls {statistics.median(lists)}; "
            f"start median {statistics.median(seconds) * 1000:.0f} ms "
            f"(min {min(seconds) * 1000:.0f}, max {max(seconds) * 1000:.0f}); calls: {last}"
        )
    egi = statistics.median(results["EGISpawner"][0])
    old = statistics.median(results["older egi-notebooks-hub"][0])
    print(f"ratio EGISpawner/older calls: {egi / old:.2f}  (target: <= 2 calls, 0 lists)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.claims, args.runs))
