"""The emulator as its own process, for tests that run a hub or a command against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]


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
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(timeout=10, headers={"Authorization": "Bearer test"})

    def start(self, timeout: float = 20) -> EmulatorProcess:
        argv = [sys.executable, "-m", "tests.harness.k8s", "--kubeconfig", str(self.kubeconfig)]
        if self.run_processes:
            argv += ["--run-processes", "--root", str(self.root)]
        self.log_path = self.workdir / "emulator.log"
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if line.startswith("READY "):
                self.url = line.split()[1]
                return self
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"emulator did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
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
