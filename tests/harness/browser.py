"""`egi-notebooks demo` as a real process, headless Debian Chromium, and what a stop leaves behind.

The demo is started the way a user starts it (``python -m egi_notebooks.cli demo``) in a session
of its own, so that SIGINT reaches only the demo, as Ctrl-C in its terminal would. Every process
it starts is found through ``/proc`` (parent links, command lines, working directories and
environments), so a test can prove that a stop leaves none of them and frees their ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from .ports import demo_port_block

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, never a downloaded build; nothing may reach out of the machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BANNER = "EGI Notebooks demo running at "


# -- processes seen through /proc ------------------------------------------------------------
def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return b""


def process_ids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid``: with the pid it names one process, even after reuse."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat.rsplit(b")", 1)[1].split()
    return int(fields[19])


def parent_of(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    return int(stat.rsplit(b")", 1)[1].split()[1]) if stat else None


def descendants(root: int) -> dict[int, int]:
    """Every living descendant of ``root`` as {pid: start time}."""
    parents = {pid: parent_of(pid) for pid in process_ids()}
    found: dict[int, int] = {}
    frontier = {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        for pid in children:
            started = start_time(pid)
            if started is not None:
                found[pid] = started
        frontier = children
    return found


def still_alive(processes: dict[int, int]) -> list[int]:
    """The pids of ``processes`` ({pid: start time}) that are still the same processes."""
    return [pid for pid, started in processes.items() if start_time(pid) == started]


def describe(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def mentioning(markers: Iterable[str], among: Iterable[int] | None = None) -> dict[int, str]:
    """Processes (``among`` these, or all) whose command line, cwd or environment holds a marker."""
    needles = [m.encode() for m in markers]
    skip = {os.getpid()}
    found = {}
    for pid in process_ids() if among is None else among:
        if pid in skip:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd").encode()
        except OSError:
            cwd = b""
        text = b"\0".join([_read(f"/proc/{pid}/cmdline"), cwd, _read(f"/proc/{pid}/environ")])
        if any(n in text for n in needles):
            found[pid] = describe(pid)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening_ports(pids: Iterable[int] | None = None) -> set[int]:
    """TCP ports in LISTEN state, of ``pids`` only when given (from /proc/net/tcp{,6})."""
    inodes = set().union(*(_socket_inodes(p) for p in pids)) if pids is not None else None
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).decode().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            if inodes is None or fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _as_in_a_terminal() -> None:
    """SIGINT handled as in a terminal, even when pytest was started with it ignored (`&`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _as_in_the_background() -> None:
    """SIGINT ignored, as a non-interactive shell leaves it for a command started with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the demo --------------------------------------------------------------------------------
class DemoProcess:
    """``egi-notebooks demo --port P --state-dir D --fresh`` run as a user would run it."""

    def __init__(
        self,
        port: int,
        state_dir: Path,
        extra_args: list[str] | None = None,
        cwd: Path = ROOT,
        background: bool = False,
    ):
        self.port = port
        self.cwd = Path(cwd)
        self.background = background
        self.state_dir = Path(state_dir)
        self.url = f"http://127.0.0.1:{port}"
        self.command = [sys.executable, "-m", "egi_notebooks.cli", "demo", "--port", str(port)]
        self.command += ["--state-dir", str(state_dir), "--fresh", *(extra_args or [])]
        self.internal_ports = demo_port_block()
        self.command += ["--internal-ports", self.internal_ports]
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self._banner = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def text(self) -> str:
        return "".join(self.output)

    def start(self, timeout: float = 90) -> DemoProcess:
        """Start it and wait for its banner (printed once the hub answers)."""
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,  # ./run demo runs it in ROOT: node_modules/.bin holds the proxy
            env={**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            preexec_fn=_as_in_the_background if self.background else _as_in_a_terminal,
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._banner.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the demo did not print its banner:\n{self.text}")
        return self

    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith(BANNER):
                self._banner.set()

    def descendants(self) -> dict[int, int]:
        assert self.proc is not None
        return descendants(self.proc.pid)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to the demo alone; its exit code (raises if it does not exit)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        """Last resort after a failed test: the demo and whatever it started."""
        if self.proc is None:
            return
        for pid in [*self.descendants(), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def hub_answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def stop_and_check(demo: DemoProcess, timeout: float = 60, settle: float = 10) -> list[str]:
    """Stop the demo with SIGINT; the problems found with what it leaves behind (empty: none).

    Checked: it exits with 0; no process it started survives (by parent links taken just before
    the stop, and by any mention of its state dir or public URL anywhere on the machine); every
    port its processes listened on is free again.
    """
    started = demo.descendants()
    ports = listening_ports(started) | {demo.port}
    problems = []
    try:
        code = demo.interrupt(timeout)
    except subprocess.TimeoutExpired:
        problems.append(f"demo still running {timeout:g} s after SIGINT")
        code = 0
    if code != 0:
        problems.append(f"demo exited with {code}:\n{demo.text[-2000:]}")
    deadline = time.monotonic() + settle  # a killed process may take a moment to be reaped
    while True:
        left = still_alive(started)
        mentions = mentioning([str(demo.state_dir), demo.url])
        busy = ports & listening_ports()
        if not (left or mentions or busy) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems += [f"process {pid} survived: {describe(pid)}" for pid in left]
    problems += [f"process {pid} still mentions the demo: {cmd}" for pid, cmd in mentions.items()]
    problems += [f"port {port} still listening" for port in sorted(busy)]
    if problems:  # report, but leave no stray process to the next test
        demo.kill()
        for pid in set(left) | set(mentions):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return problems


def launch_chromium(playwright, user_data_dir: Path):  # noqa: ANN001 (playwright's own types)
    """A persistent context (fresh user-data-dir) of Debian's headless Chromium."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 800},
    )


class Screenshots:
    """Numbered screenshots of a page: ``test-artifacts/<folder>/NN-step.png``."""

    def __init__(self, folder: str):
        self.dir = ARTIFACTS / folder
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):  # a rerun must not show an older run's steps
            old.unlink()
        self.count = 0

    def take(self, page, step: str, full_page: bool = False) -> Path:  # noqa: ANN001
        self.count += 1
        path = self.dir / f"{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path
