"""A real JupyterHub process (with configurable-http-proxy) for end-to-end tests and benchmarks.

The hub is started from Python with ``start_new_session=True``: started with ``&`` from a
non-interactive shell it would inherit SIGINT as ignored, its managed services would ignore
the hub's interrupt, and shutdown would wait ``interrupt_timeout``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import textwrap
import time
from pathlib import Path

import httpx

from egi_notebooks.demo.processes import ChildProcess

from .ports import free_port

__all__ = ["LOCAL_SPAWNER_CONFIG", "HubProcess", "chp_command", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"


def chp_command() -> list[str]:
    if CHP.exists():
        return [str(CHP)]
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    raise RuntimeError("configurable-http-proxy not found: run `./run test` (it runs npm install)")


# Single-user servers run as local processes; as root jupyter-server needs allow_root.
LOCAL_SPAWNER_CONFIG = """
c.JupyterHub.spawner_class = "simple"
c.Spawner.args = ["--ServerApp.allow_root=True", "--ServerApp.disable_check_xsrf=False"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
"""


class HubProcess:
    """One JupyterHub process in ``workdir``; ``config`` is appended to the base config."""

    def __init__(
        self,
        workdir: Path,
        config: str = "",
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = textwrap.dedent(config)
        self.env = dict(env or {})
        self.port = port or free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.admin_token = secrets.token_hex(16)
        self.crypt_key = secrets.token_hex(32)
        self.log_path = self.workdir / "jupyterhub.log"
        self.child: ChildProcess | None = None
        # argv run before the hub's own (e.g. ``unshare ...`` to give it a private /etc/hosts)
        self.command_prefix: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub_api_url(self) -> str:
        return f"{self.url}/hub/api"

    def base_config(self) -> str:
        return textwrap.dedent(
            f"""
            c = get_config()  # noqa
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.command = {chp_command()!r}
            c.ConfigurableHTTPProxy.should_start = True
            c.JupyterHub.db_url = "sqlite:///{self.workdir / "jupyterhub.sqlite"}"
            c.JupyterHub.cookie_secret_file = "{self.workdir / "jupyterhub_cookie_secret"}"
            c.JupyterHub.pid_file = "{self.workdir / "jupyterhub.pid"}"
            c.JupyterHub.cleanup_servers = True
            c.JupyterHub.log_level = "DEBUG"
            c.JupyterHub.services = [{{"name": "test-admin", "api_token": "{self.admin_token}"}}]
            c.JupyterHub.load_roles = [
                {{"name": "admin", "services": ["test-admin"]}},
                # test-only: the harness inspects auth_state, which admins may not read
                {{"name": "test-inspect-auth-state", "scopes": ["admin:auth_state"],
                  "services": ["test-admin"]}},
            ]
            """
        )

    def write_config(self) -> Path:
        path = self.workdir / "jupyterhub_config.py"
        path.write_text(self.base_config() + "\n" + self.config)
        return path

    def start(self, timeout: float = 60) -> HubProcess:
        config_path = self.write_config()
        env = dict(os.environ)
        env.update({"JUPYTERHUB_CRYPT_KEY": self.crypt_key, "PYTHONUNBUFFERED": "1"})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.env)
        self.child = ChildProcess(
            "jupyterhub",
            [*self.command_prefix, sys.executable, "-m", "jupyterhub", "-f", str(config_path)],
            self.log_path,
            env=env,
        ).start(cwd=self.workdir)
        try:
            self.child.wait_http(f"{self.hub_api_url}/", timeout=timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20, sweep: bool = True) -> None:
        """Stop the hub; with ``sweep``, also whatever it started that outlives it
        (services and servers run in sessions of their own, and a hub killed mid-shutdown
        leaves them orphaned). ``restart`` keeps them: servers may outlive a hub."""
        if self.child is not None:
            self.child.stop(timeout, sweep=sweep)
            self.child = None

    def restart(self, timeout: float = 60) -> HubProcess:
        self.stop(sweep=False)
        return self.start(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # REST API helpers (as the admin service)
    def api_headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"token {token or self.admin_token}"}

    def api(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        kw.setdefault("timeout", 30)
        return httpx.request(
            method, f"{self.hub_api_url}{path}", headers=self.api_headers(token), **kw
        )

    def async_client(self, token: str | None = None, **kw) -> httpx.AsyncClient:
        kw.setdefault("timeout", 30)
        return httpx.AsyncClient(base_url=self.hub_api_url, headers=self.api_headers(token), **kw)

    def wait_for_server(self, user: str, name: str = "", ready: bool = True, timeout: float = 60):
        """Poll the REST API until the server is ready (or gone, with ``ready=False``)."""
        deadline = time.monotonic() + timeout
        model = {}
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get(name)
            if ready and server and server.get("ready"):
                return server
            if not ready and not server:
                return None
            time.sleep(0.25)
        raise TimeoutError(
            f"server {user}/{name} ready={ready} not reached: {model}\n{self.log_tail()}"
        )

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
