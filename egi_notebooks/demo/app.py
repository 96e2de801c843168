"""``egi-notebooks demo``: a complete local EGI Notebooks on 127.0.0.1.

The certified OpenID provider (npm ``oidc-provider``, configured as EGI Check-in; it runs from
the source checkout's node_modules) stands in for EGI Check-in (demo users below), JupyterHub
runs ``EGICheckinAuthenticator`` against it, JupyterLab servers run as local processes (no
Kubernetes here; production uses ``egi-kubespawner``), with the hub-managed services.
Ctrl-C stops everything it started. All state lives in one directory (``--state-dir``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from ..cli import HelpFormatter
from .accounts import DEMO_ENTITLEMENTS, make_config
from .processes import (
    ChildProcess,
    PortPicker,
    parse_port_range,
    port_is_free,
    start_checkin_provider,
)

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
DEMO_LOGINS = {
    "alice": "member of vo.notebooks.egi.eu and vo.access.egi.eu",
    "bob": "member of vo.access.egi.eu",
    "admin": "manager of vo.notebooks.egi.eu: hub admin",
    "mallory": "member of vo.other.eu only: refused (403)",
}


DEMO_INTERNAL_PORTS = "10000-19999"


def port_range(text: str) -> tuple[int, int]:
    try:
        return parse_port_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="egi-notebooks demo", formatter_class=HelpFormatter, description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=8000, help="public port of the hub")
    parser.add_argument(
        "--state-dir", default=".egi-notebooks-demo", help="where every file of the demo goes"
    )
    parser.add_argument("--fresh", action="store_true", help="start with an empty state dir")
    parser.add_argument(
        "--extra-config", help="a Python file appended to the demo's hub configuration"
    )
    parser.add_argument(
        "--internal-ports",
        default=DEMO_INTERNAL_PORTS,
        type=port_range,
        metavar="LOW-HIGH",
        help="where the hub, the proxy's API and the services listen: keep it below the "
        "kernel's ephemeral range (net.ipv4.ip_local_port_range), where an outgoing "
        "connection could take a port before its child binds it",
    )
    parser.add_argument(
        "--exit-when-ready", action="store_true", help="stop again once the hub answers (checks)"
    )
    return parser.parse_args(argv)


def chp_path() -> str | None:
    local = Path.cwd() / "node_modules" / ".bin" / "configurable-http-proxy"
    return str(local) if local.exists() else shutil.which("configurable-http-proxy")


LOCK_FILE = "demo.lock"


class StateDirInUse(RuntimeError):
    """Another demo runs in this state directory."""


def lock_state_dir(state: Path, port: int) -> int:
    """Hold ``state``'s lock for this process's lifetime: the open file descriptor.

    Two demos in one directory would share one hub database and one provider log; the lock
    (flock, released by the kernel when this process ends, however it ends) keeps the second
    out, and the file names the holder's PID and port for the refusal message.
    """
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace")
        os.close(fd)
        try:
            info = json.loads(holder)
            who = f"the demo with PID {info['pid']} on port {info['port']}"
        except (ValueError, KeyError, TypeError):
            who = "another demo"
        raise StateDirInUse(
            f"{state} is in use by {who}: stop it first, or choose another --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "port": port}).encode())
    return fd


def empty_state_dir(state: Path) -> None:
    """Remove everything in ``state`` but its lock (held by this process)."""
    for path in state.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = Path(args.state_dir).resolve()
        self.url = f"http://127.0.0.1:{args.port}"
        self.children: list[ChildProcess] = []
        low, high = args.internal_ports
        self.free_port = PortPicker(low, high + 1, avoid=frozenset({args.port}))

    def start(self) -> None:
        if self.args.fresh:
            say(f"emptying {self.state} (--fresh)")
            empty_state_dir(self.state)
        say("starting the local EGI Check-in (demo accounts)")
        provider = self.start_provider()
        say(f"starting JupyterHub and its services (logs in {self.state / 'jupyterhub.log'})")
        self.start_hub(provider)

    def start_provider(self) -> dict:
        config = make_config(f"{self.url}/hub/oauth_callback", f"{self.url}/hub/login")
        path = self.state / "provider.json"
        path.write_text(json.dumps(config, indent=1))
        path.chmod(0o600)
        provider, config["issuer"] = start_checkin_provider(
            path, self.state / "provider.log", self.state
        )
        self.children.append(provider)
        # the hub finds the provider through discovery: a wrong issuer would make every
        # sign-in fail, so the banner waits until discovery answers at this issuer
        provider.wait_http(f"{config['issuer']}/.well-known/openid-configuration", timeout=30)
        return config

    def start_hub(self, provider: dict) -> None:
        chp = chp_path()
        if chp is None:
            raise RuntimeError("configurable-http-proxy not found: `./run demo` installs it")
        env = dict(os.environ)
        env.update(
            {
                "EGI_DEMO_STATE": str(self.state),
                "EGI_DEMO_PORT": str(self.args.port),
                "EGI_DEMO_HUB_PORT": str(self.free_port()),
                "EGI_DEMO_PROXY_API_PORT": str(self.free_port()),
                "EGI_DEMO_TOKENS_PORT": str(self.free_port()),
                "EGI_DEMO_STATUS_PORT": str(self.free_port()),
                "EGI_DEMO_ACCOUNTING_PORT": str(self.free_port()),
                "EGI_DEMO_ISSUER": provider["issuer"],
                "EGI_DEMO_CLIENT_ID": provider["clients"][0]["client_id"],
                "EGI_DEMO_CLIENT_SECRET": provider["clients"][0]["client_secret"],
                "JUPYTERHUB_CRYPT_KEY": self.crypt_key(),
                "PATH": os.pathsep.join(
                    [str(Path(chp).parent), str(Path(sys.executable).parent), env.get("PATH", "")]
                ),
            }
        )
        if self.args.extra_config:
            env["EGI_DEMO_EXTRA_CONFIG"] = str(Path(self.args.extra_config).resolve())
        hub = ChildProcess(
            "jupyterhub",
            [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)],
            self.state / "jupyterhub.log",
            env=env,
        ).start(cwd=self.state)
        self.children.append(hub)
        hub.wait_http(f"{self.url}/hub/api/", timeout=120)

    def crypt_key(self) -> str:
        path = self.state / "crypt_key"
        if not path.exists():
            path.write_text(os.urandom(32).hex())
            path.chmod(0o600)
        return path.read_text().strip()

    def stop(self) -> None:
        for child in reversed(self.children):  # the hub first: it stops servers and services
            child.stop()
        self.children.clear()

    def banner(self) -> str:
        lines = [
            "",
            f"EGI Notebooks demo running at {self.url}/",
            f"  admin page:       {self.url}/hub/admin (sign in as admin)",
            f"  status page:      {self.url}/services/status/",
            f"  accounting view:  {self.url}/services/accounting/ (sign in as admin)",
            f"state and logs in {self.state}",
            "sign in with (password = login name):",
        ]
        lines += [f"  {login:<8} {what}" for login, what in DEMO_LOGINS.items()]
        lines += ["Ctrl-C stops everything.", ""]
        return "\n".join(lines)


def say(message: str) -> None:
    """A progress line of the demo (stdout, at once: a user waits for it)."""
    print(f"egi-notebooks demo: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    assert set(DEMO_LOGINS) == set(DEMO_ENTITLEMENTS)
    try:
        lock_state_dir(Path(args.state_dir).resolve(), args.port)
    except StateDirInUse as e:
        print(f"egi-notebooks demo: {e}", file=sys.stderr)
        return 1
    if not port_is_free(args.port):
        print(
            f"egi-notebooks demo: port {args.port} on 127.0.0.1 is taken; "
            f"choose another with --port",
            file=sys.stderr,
        )
        return 1
    demo = Demo(args)
    # Started from a script with `&`, SIGINT arrives ignored and every child would inherit
    # that: restore Ctrl-C, and treat SIGTERM the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        demo.start()
        print(demo.banner(), flush=True)
        while not args.exit_when_ready:
            for child in demo.children:
                if not child.running:
                    print(f"{child.name} stopped:\n{child.log_tail()}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping the demo...", file=sys.stderr, flush=True)
    except (RuntimeError, TimeoutError) as e:
        print(f"egi-notebooks demo: {e}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    print("stopped", flush=True)
    return 0
