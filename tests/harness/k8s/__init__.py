"""Kubernetes API emulator for tests: kmock 0.8 + our thin layer + a kubelet.

In-process use (unit tests, benchmarks)::

    async with running_emulator() as cluster:      # cluster.k8s, cluster.url, cluster.kubelet
        use_emulator(cluster.url, tmp_path)       # points kubernetes_asyncio/kubespawner at it
        ...
        await reset_kubespawner()                 # stop class-level reflectors

As its own process (a hub process needs a KUBECONFIG to a loopback port)::

    python -m tests.harness.k8s --kubeconfig /tmp/kubeconfig --run-processes --root DIR
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import kmock

from .emulator import Call, Fault, K8sEmulator
from .kubelet import Kubelet

__all__ = [
    "Call",
    "Cluster",
    "Fault",
    "K8sEmulator",
    "Kubelet",
    "reset_kubespawner",
    "running_emulator",
    "use_emulator",
    "write_kubeconfig",
]


@dataclass
class Cluster:
    k8s: K8sEmulator
    kubelet: Kubelet
    url: str


@contextlib.asynccontextmanager
async def running_emulator(
    *,
    port: int | None = None,
    run_processes: bool = False,
    root: str | Path | None = None,
    startup_delay: float = 0.0,
    validate: bool = True,
) -> AsyncIterator[Cluster]:
    async with K8sEmulator(validate=validate) as k8s, kmock.Server(k8s, port=port) as server:
        kubelet = Kubelet(k8s, run_processes=run_processes, root=root, startup_delay=startup_delay)
        try:
            yield Cluster(k8s, kubelet, str(server.url).rstrip("/"))
        finally:
            await kubelet.close()
            if root is None:
                kubelet.cleanup()


def write_kubeconfig(url: str, path: str | Path) -> Path:
    """A kubeconfig (JSON is valid YAML) with one context pointing at ``url``."""
    path = Path(path)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "hub", "user": {"token": "emulator-accepts-anything"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "hub"}}],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(config))
    return path


def use_emulator(url: str, directory: str | Path) -> Path:
    """Point kubernetes_asyncio and kubespawner at ``url`` in this process.

    kubernetes_asyncio reads KUBECONFIG at import and kubespawner caches ``load_config``,
    so setting the environment variable is not enough: patch the module default and clear
    the cache too.
    """
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    path = write_kubeconfig(url, Path(directory) / "kubeconfig")
    os.environ["KUBECONFIG"] = str(path)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
    clients.load_config.cache_clear()
    return path


async def reset_kubespawner() -> None:
    """Stop the class-level reflectors and drop cached clients/config (between tests)."""
    from kubespawner import KubeSpawner, clients

    await KubeSpawner._stop_all_reflectors()
    clients.load_config.cache_clear()
    clients._client_cache.clear()
