"""Child processes of the demo (and of the test harness): start, wait until ready, stop.

Children get a session of their own (``start_new_session``): a hub started from a
non-interactive shell with ``&`` inherits SIGINT as ignored and its services then ignore
the hub's interrupt (traps.md); and Ctrl-C in the demo's terminal reaches only the demo,
which then stops every child in order.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# what the local providers print once they listen, followed by their issuer
READY_LINE = "provider ready at "
CHECKIN_SCRIPT = Path("devtools") / "oidc-provider" / "checkin.mjs"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for port-0 binds and outgoing connections (both ends included)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def parse_port_range(text: str) -> tuple[int, int]:
    """``"LOW-HIGH"`` (both included) as ``(low, high)``; a ValueError says what is wrong."""
    low_text, sep, high_text = text.partition("-")
    if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise ValueError(f"port range {text!r}: write it as LOW-HIGH, e.g. 10000-19999")
    low, high = int(low_text), int(high_text)
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"port range {text!r}: ports are between 1 and 65535")
    if low > high:
        raise ValueError(f"port range {text!r}: LOW must not be above HIGH")
    return low, high


class PortPicker:
    """Free ports from ``[low, high)``, each handed out once before the picker wraps around.

    A picked port is bound later, by a child. A port from the kernel's ephemeral range can be
    taken in between by any outgoing connection or port-0 bind on the machine (a kernel's
    ZeroMQ sockets, a single-user server), and two processes asking the kernel for a port-0
    port can both get the same one. A range below the ephemeral range that only this picker
    walks has neither race.
    """

    def __init__(
        self, low: int, high: int, start: int | None = None, avoid: frozenset[int] = frozenset()
    ) -> None:
        if not low < high:
            raise ValueError(f"empty port range {low}-{high - 1}")
        self.low, self.high = low, high
        self.avoid = avoid  # ports free now that something else binds later
        self._next = random.randrange(low, high) if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            for _ in range(self.high - self.low):
                port = self._next
                self._next = self.low + (port + 1 - self.low) % (self.high - self.low)
                if port not in self.avoid and port_is_free(port):
                    return port
        raise RuntimeError(f"no free port in {self.low}-{self.high - 1}")


class ChildProcess:
    """One long-running child with its output in ``log_path``."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.command = command
        self.log_path = Path(log_path)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._log: BinaryIO | None = None
        self._log_start = 0  # where this run's output begins: a restart appends to the log

    def start(self, cwd: Path | None = None) -> ChildProcess:
        self._log = log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self._log_start = log.tell()
        self.proc = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """This run's output (the log file may hold earlier runs' too)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_until(
        self, ready: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
    ) -> None:
        """Poll ``ready`` until true; raise with the log tail if the child dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"{self.name} exited ({code}) before {what}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(interval)
        raise TimeoutError(f"{self.name}: no {what} after {timeout:.0f} s:\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float = 60, ok: tuple[int, ...] = (200,)) -> None:
        import httpx  # here: `egi-notebooks demo --help` runs before any set-up

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code in ok
            except httpx.HTTPError:
                return False

        self.wait_until(answers, timeout, f"answer at {url}")

    def descendants(self) -> list:
        """Processes started under this child, whatever session they moved to."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            import psutil

            return psutil.Process(self.proc.pid).children(recursive=True)
        except Exception:  # psutil missing, or the child just exited
            return []

    def stop(self, timeout: float = 20, sweep: bool = True) -> None:
        """SIGTERM, then SIGKILL for the child's whole session after ``timeout``; then, with
        ``sweep``, any process it started in a session of its own (proxy, services, servers)
        that outlived it."""
        leftovers = self.descendants() if sweep else []
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(5)
        for process in leftovers:
            try:
                process.kill()
            except Exception:  # already gone
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


def checkout_root() -> Path | None:
    """The source checkout with the certified provider and its node_modules: the current
    directory or the one this package was installed from (editable install), else None."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / CHECKIN_SCRIPT).is_file() and (root / "node_modules" / "oidc-provider").is_dir():
            return root
    return None


def start_checkin_provider(
    config_path: Path, log_path: Path, cwd: Path, env: dict | None = None, timeout: float = 30
) -> tuple[ChildProcess, str]:
    """The certified OpenID provider (npm ``oidc-provider``, configured as EGI Check-in) as a
    child on a free port: the child and its issuer. It runs from a source checkout, which has
    the script and the ``node_modules`` that ``./run`` installs."""
    root = checkout_root()
    node = shutil.which("node")
    if root is None or node is None:
        raise RuntimeError(
            f"the local EGI Check-in needs node and a source checkout with {CHECKIN_SCRIPT} and "
            "node_modules/oidc-provider: run it from the checkout, where `./run demo` "
            "(npm install) puts them"
        )
    argv = [node, str(root / CHECKIN_SCRIPT), "--port", "0", "--config", str(config_path)]
    return start_announcing_provider(argv, log_path, cwd, env, timeout)


def start_announcing_provider(
    argv: list[str], log_path: Path, cwd: Path, env: dict | None = None, timeout: float = 30
) -> tuple[ChildProcess, str]:
    """A provider child that picks its own port and prints ``READY_LINE`` and its issuer once
    it listens (no race for a free port): the child and that issuer."""
    provider = ChildProcess("provider", argv, log_path, env=env).start(cwd=cwd)
    try:
        provider.wait_until(lambda: READY_LINE in provider.log(), timeout, "ready line", 0.05)
    except BaseException:
        provider.stop()
        raise
    return provider, provider.log().split(READY_LINE, 1)[1].split()[0]
