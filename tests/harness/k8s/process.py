"""The emulator as its own process, for tests that run a hub or a command against it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from egi_notebooks.demo.processes import ChildProcess

ROOT = Path(__file__).resolve().parents[3]
READY = "READY "  # printed with the URL once the emulator listens (__main__.py)


class EmulatorProcess:
    """``python -m tests.harness.k8s`` in ``workdir``: ``.url``, ``.kubeconfig``, ``.root``.

    ``get``/``post``/``list`` talk to it over HTTP as any Kubernetes client would.
    """

    def __init__(self, workdir: Path, run_processes: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.root = self.workdir / "kubelet"
        self.run_processes = run_processes
        self.url = ""
        self.child: ChildProcess | None = None
        self.http = httpx.Client(timeout=10, headers={"Authorization": "Bearer test"})

    def start(self, timeout: float = 20) -> EmulatorProcess:
        argv = [sys.executable, "-m", "tests.harness.k8s", "--kubeconfig", str(self.kubeconfig)]
        if self.run_processes:
            argv += ["--run-processes", "--root", str(self.root)]
        self.log_path = self.workdir / "emulator.log"
        self.child = ChildProcess("k8s emulator", argv, self.log_path).start(cwd=ROOT)
        try:
            self.child.wait_until(lambda: self._announced_url() != "", timeout, "READY line", 0.02)
        except BaseException:
            self.stop()
            raise
        self.url = self._announced_url()
        return self

    def _announced_url(self) -> str:
        assert self.child is not None
        lines = self.child.log().splitlines()
        return next((line.split()[1] for line in lines if line.startswith(READY)), "")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(15)
            self.child = None
        self.http.close()

    # ----- the API over HTTP -----------------------------------------------------------

    def path(self, plural: str, namespace: str, name: str = "") -> str:
        return f"{self.url}/api/v1/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        r = self.http.get(self.path(plural, namespace, name))
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def list(self, plural: str, namespace: str, **params: str) -> list[dict[str, Any]]:
        r = self.http.get(self.path(plural, namespace), params=params)
        r.raise_for_status()
        return r.json()["items"]

    def post(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(self.path(plural, namespace), json=body)
        r.raise_for_status()
        return r.json()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
