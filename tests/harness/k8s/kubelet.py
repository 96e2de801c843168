"""A "kubelet" for the emulator: it makes pods Running, and can run them for real.

Without processes (unit tests, benchmarks) a new pod becomes Running and ready with a
``podIP`` after ``startup_delay``. With ``run_processes=True`` (end-to-end tests) the pod's
container command (``jupyterhub-singleuser``) is started as a real local process:

- each pod gets its own loopback address (from a random start in 127.0.0.0/8, skipping
  addresses where its port is taken), reported as ``podIP``,
  so every server listens on its container port as it would in a cluster;
- the container environment is passed as is, except that JUPYTERHUB_SERVICE_URL is bound
  to the pod IP and values pointing into a volume mount point at the materialised copy;
- Secret volumes are written as files (kept in sync when the Secret changes, as the real
  kubelet does) and claim volumes are directories that outlive the pod, under ``root``;
- the pod is marked ready once the port accepts connections; deleting the pod stops the
  process; a process that exits marks the pod Failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .emulator import K8sEmulator


def notebook_port(container: dict[str, Any]) -> int:
    ports = container.get("ports") or []
    return next((p["containerPort"] for p in ports if p.get("name") == "notebook-port"), 8888)


class Kubelet:
    def __init__(
        self,
        k8s: K8sEmulator,
        *,
        run_processes: bool = False,
        root: str | Path | None = None,
        startup_delay: float = 0.0,
        ready_timeout: float = 30.0,
    ) -> None:
        self.k8s = k8s
        self.run_processes = run_processes
        self.root = Path(root or tempfile.mkdtemp(prefix="kubelet-"))
        self.startup_delay = startup_delay
        self.ready_timeout = ready_timeout
        self.processes: dict[tuple[str, str], subprocess.Popen] = {}
        self.tasks: set[asyncio.Task] = set()
        # a random start in 127.0.0.0/8 (all loopback): emulators of parallel test runs hand
        # out different addresses (the same one meant a pod reached another run's server)
        self._next_ip = ipaddress.IPv4Address(
            f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.2"
        )
        k8s.listeners.append(self._on_event)

    # ----- events ------------------------------------------------------------------------

    def _on_event(self, kind: str, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        if plural == "pods" and kind == "ADDED":
            self._spawn(self._start_pod(key))
        elif plural == "pods" and kind == "DELETED":
            self._stop_process(key)
        elif plural == "secrets" and kind in ("ADDED", "MODIFIED") and self.run_processes:
            for (ns, name), _ in list(self.processes.items()):
                pod = self.k8s.store.get(("pods", ns, name))
                if pod is not None and ns == meta.get("namespace"):
                    self._write_secret_volumes(pod)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _allocate_ip(self, port: int) -> str:
        """The next loopback address where nothing listens on ``port`` (in a cluster each pod
        has an IP of its own: no other process can hold its port)."""
        if not self.run_processes:
            return "127.0.0.1"
        while True:
            ip, self._next_ip = str(self._next_ip), self._next_ip + 1
            with socket.socket() as probe:
                try:
                    probe.bind((ip, port))
                except OSError:
                    continue
            return ip

    async def _start_pod(self, key: tuple[str, str]) -> None:
        if self.startup_delay:
            await asyncio.sleep(self.startup_delay)
        pod = self.k8s.store.get(("pods", *key))
        if pod is None:
            return
        containers = pod["spec"]["containers"]
        ip = self._allocate_ip(notebook_port(containers[0]))
        if self.run_processes:
            try:
                await self._run(pod, ip)
            except Exception as exc:  # the pod fails, as a crashing container would
                self._set_status(key, "Failed", ip, containers, ready=False, message=str(exc))
                return
        self._set_status(key, "Running", ip, containers, ready=True)

    def _set_status(self, key, phase, ip, containers, *, ready, message="") -> None:
        status = {
            "phase": phase,
            "podIP": ip,
            "hostIP": "127.0.0.1",
            "message": message,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "ready": ready,
                    "restartCount": 0,
                    "image": c.get("image", ""),
                    "imageID": "",
                    "state": {"running": {}} if ready else {"terminated": {"exitCode": 1}},
                }
                for c in containers
            ],
        }
        self.k8s.set_status("pods", key[0], key[1], status)

    # ----- real processes ----------------------------------------------------------------

    def pod_dir(self, pod: dict[str, Any]) -> Path:
        return self.root / "pods" / pod["metadata"]["uid"]

    def _mounts(self, pod: dict[str, Any]) -> dict[str, Path]:
        """Container mount path -> host directory for every volume mount of the container."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        container = pod["spec"]["containers"][0]
        mounts = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"], {})
            if "persistentVolumeClaim" in volume:
                host = self.root / "claims" / volume["persistentVolumeClaim"]["claimName"]
            else:
                host = self.pod_dir(pod) / "volumes" / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/") or "/"] = host
        return mounts

    def _write_secret_volumes(self, pod: dict[str, Any]) -> None:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        ns = pod["metadata"]["namespace"]
        for mount in pod["spec"]["containers"][0].get("volumeMounts") or []:
            secret_ref = volumes.get(mount["name"], {}).get("secret")
            if not secret_ref:
                continue
            target = self._mounts(pod)[mount["mountPath"].rstrip("/") or "/"]
            secret = self.k8s.store.get(("secrets", ns, secret_ref["secretName"]))
            data = (secret or {}).get("data") or {}
            for fname, value in data.items():
                tmp = target / f".{fname}.tmp"
                tmp.write_bytes(base64.b64decode(value))
                os.chmod(tmp, 0o600)
                tmp.replace(target / fname)  # atomic, as the kubelet's symlink swap is
            for stale in target.iterdir():
                if not stale.name.startswith(".") and stale.name not in data:
                    stale.unlink()

    def _map_path(self, value: str, mounts: dict[str, Path]) -> str:
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(mounts[mount_path]) + value[len(mount_path) :]
        return value

    async def _run(self, pod: dict[str, Any], ip: str) -> None:
        container = pod["spec"]["containers"][0]
        mounts = self._mounts(pod)
        self._write_secret_volumes(pod)
        argv = (container.get("command") or []) + (container.get("args") or [])
        if not argv:
            raise RuntimeError("pod has no command (the emulator cannot run images)")
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = self._map_path(item["value"], mounts)
        port = notebook_port(container)
        # a taken port fails the pod instead of moving the server to another one
        env["JUPYTER_PORT_RETRIES"] = "0"
        service_url = env.get("JUPYTERHUB_SERVICE_URL", f"http://0.0.0.0:{port}/")
        scheme, rest = service_url.split("://", 1)
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        env["JUPYTERHUB_SERVICE_URL"] = f"{scheme}://{ip}:{port}{path}"
        workdir = container.get("workingDir")
        cwd = self._map_path(workdir, mounts) if workdir else None
        home = next((str(h) for m, h in mounts.items() if m.startswith("/home")), None)
        env["HOME"] = home or str(self.pod_dir(pod))
        cwd = cwd or env["HOME"]
        proc = self._popen(argv, env, cwd, self.pod_dir(pod) / "container.log")
        self.processes[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = proc
        deadline = asyncio.get_running_loop().time() + self.ready_timeout
        while asyncio.get_running_loop().time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"container exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(ip, port)
                writer.close()
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"container did not listen on {ip}:{port}")

    @staticmethod
    def _popen(argv: list[str], env: dict, cwd: str, log_path: Path) -> subprocess.Popen:
        # Popen (not asyncio's subprocess API) so the process outlives no event loop and
        # can be stopped from a synchronous event listener; fork+exec does not block long.
        with open(log_path, "wb") as log:
            return subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _stop_process(self, key: tuple[str, str]) -> None:
        proc = self.processes.pop(key, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            self._spawn(self._reap(proc))

    @staticmethod
    async def _reap(proc: subprocess.Popen) -> None:
        for _ in range(50):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def claim_dir(self, claim_name: str) -> Path:
        return self.root / "claims" / claim_name

    async def close(self) -> None:
        for key in list(self.processes):
            self._stop_process(key)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=6)
        if self._on_event in self.k8s.listeners:
            self.k8s.listeners.remove(self._on_event)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
