"""One probe run: create the probe user, start its server, run code in a kernel, stop it.

Every phase has its own timeout and its duration is recorded; the first failing phase makes
the run CRITICAL with the phase and the reason, and a failed run always stops the server it
may have started.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ..hub import HubAPIError, HubClient
from . import PROBE_GROUP
from .kernel import KernelClient, KernelError
from .results import CRITICAL, RunResult, grade

T = TypeVar("T")

HOME_CODE = """\
import os, pathlib
p = pathlib.Path(os.path.expanduser({home!r})) / ".egi-notebooks-probe-{nonce}"
p.write_text("{nonce}")
ok = p.read_text() == "{nonce}"
p.unlink()
print("home-ok" if ok else f"{{p}} read back differently")
"""

# The probe user never signed in through the identity provider, so it has no access token.
# The file check passes when the token directory (the Secret volume) is mounted: the probe's
# Secret has no keys, so no file; a file that is there must hold a token. The service check
# passes when the tokens service, called from the kernel with the server's own API token,
# answers with a token or with its "no valid access token" 404: that answer comes only after
# the service has checked the token with the hub and asked the hub for the user's token, so
# it proves the service is reachable from notebooks and works; 401/403/5xx, another 404 or no
# answer fail. Neither check prints a token: the result is on a page anyone may read.
TOKEN_FILE_CODE = """\
import pathlib
p = pathlib.Path({path!r})
if p.is_file():
    print("token-ok" if p.read_text().strip() else f"token file {{p}} is empty")
else:
    print("token-ok" if p.parent.is_dir() else f"token directory {{p.parent}} is not mounted")
"""

TOKEN_SERVICE_CODE = """\
import json, os, urllib.error, urllib.request
url = {url!r}
auth = {{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}}
try:
    request = urllib.request.Request(url, headers=auth)
    with urllib.request.urlopen(request, timeout={timeout!r}) as r:
        body = json.load(r)
    print("token-ok" if isinstance(body, dict) and body.get("access_token")
          else "tokens service answered 200 without a token")
except urllib.error.HTTPError as e:
    text = e.read().decode(errors="replace")[:200]
    print("token-ok" if e.code == 404 and "no valid access token" in text
          else f"tokens service: HTTP {{e.code}} {{text}}")
except (urllib.error.URLError, OSError) as e:
    reason = getattr(e, "reason", None) or e
    print(f"tokens service {{url}} unreachable: {{reason}}")
except ValueError:
    print("tokens service answered 200 with no JSON")
"""


class PhaseFailed(Exception):
    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(f"{phase}: {reason}")
        self.phase = phase
        self.reason = reason


@dataclass
class ProbeConfig:
    user: str
    proxy_url: str
    token: str
    timeouts: dict[str, float]
    thresholds: dict[str, float] = field(default_factory=dict)
    code: str = ""
    expected_output: str = ""
    kernel_name: str = "python3"
    profile: str | None = None
    check_home: str = ""
    token_file: str = ""
    token_url: str = ""
    group: str = PROBE_GROUP
    poll_interval: float = 0.2
    shutdown_via_server: bool = True


class Probe:
    """One run against the hub; :meth:`run` never raises (except cancellation)."""

    def __init__(self, hub: HubClient, config: ProbeConfig, logger: logging.Logger) -> None:
        self.hub = hub
        self.config = config
        self.log = logger
        self.phases: dict[str, float] = {}
        self.nonce = secrets.token_hex(8)
        self.server_started = False
        self.server_url: str | None = None
        self.kernel: KernelClient | None = None
        #: what the current phase is doing, for timeout messages
        self.step = ""
        quoted = quote(config.user, safe="")
        self.user_path = f"/users/{quoted}"

    # -- helpers ---------------------------------------------------------------------------
    async def phase(self, name: str, func: Callable[[], Awaitable[T]]) -> T:
        timeout = self.config.timeouts.get(name, 60)
        start = time.monotonic()
        self.step = ""
        try:
            return await asyncio.wait_for(func(), timeout)
        except TimeoutError:
            where = f" {self.step}" if self.step else ""
            raise PhaseFailed(name, f"timed out after {timeout:g}s{where}") from None
        except PhaseFailed:
            raise
        except (HubAPIError, KernelError, httpx.HTTPError, OSError, ValueError) as e:
            raise PhaseFailed(name, str(e) or repr(e)) from e
        finally:
            self.phases[name] = time.monotonic() - start

    async def user_model(self) -> dict[str, Any] | None:
        response = await self.hub.request("GET", self.user_path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise HubAPIError("GET", self.user_path, response.status_code, response.text[:200])
        return response.json()

    async def server_model(self) -> dict[str, Any] | None:
        model = await self.user_model()
        return (model or {}).get("servers", {}).get("")

    async def ask_server_to_shut_down(self) -> None:
        """Best effort: POST the single-user server's own /api/shutdown.

        The server then cleans up its kernels and extensions and exits, so the hub's stop
        finds it (nearly) gone; otherwise the hub signals it and polls the process with a
        growing random back-off, which was most of a run's stop time.
        """
        if not (self.config.shutdown_via_server and self.server_url):
            return
        self.step = "asking the server to shut down"
        headers = {"Authorization": f"token {self.config.token}"}
        try:
            async with httpx.AsyncClient(headers=headers, timeout=5) as client:
                response = await client.post(self.server_url.rstrip("/") + "/api/shutdown")
            if response.status_code != 200:
                self.log.info(
                    "server shutdown request: HTTP %s (the hub stops it instead)",
                    response.status_code,
                )
        except httpx.HTTPError as e:
            self.log.info("server shutdown request failed (the hub stops it instead): %s", e)

    async def stop_server(self) -> None:
        """Stop the default server and wait until the hub has no server for the user."""
        await self.ask_server_to_shut_down()
        self.step = "waiting for the server to stop"
        response = await self.hub.request("DELETE", f"{self.user_path}/server")
        if response.status_code not in (202, 204, 400, 404):
            raise HubAPIError("DELETE", "server", response.status_code, response.text[:200])
        # the hub has no "server stopped" event stream: poll its model (bounded by the phase)
        while True:
            if await self.server_model() is None:
                return
            await asyncio.sleep(self.config.poll_interval)

    # -- phases ----------------------------------------------------------------------------
    async def ensure_user(self) -> dict[str, Any]:
        model = await self.user_model()
        if model is None:
            self.log.info("creating probe user %s", self.config.user)
            model = await self.hub.json("POST", self.user_path, ok=(201, 409))
            model = model if model and "name" in model else await self.user_model()
        if self.config.group not in (model or {}).get("groups", []):
            # mark the user as a probe (accounting leaves group members out)
            group = f"/groups/{quote(self.config.group, safe='')}"
            body = {"users": [self.config.user]}
            response = await self.hub.request("POST", f"{group}/users", json=body)
            if response.status_code == 404:
                response = await self.hub.request("POST", group, json=body)
                if response.status_code == 409:
                    # another status service (another probe user) created the group since
                    # our 404: join it now that it exists
                    response = await self.hub.request("POST", f"{group}/users", json=body)
            if response.status_code not in (200, 201):
                raise HubAPIError("POST", group, response.status_code, response.text[:200])
        return model or {}

    async def spawn(self) -> str:
        body = {"user_options": {"profile": self.config.profile} if self.config.profile else {}}
        self.server_started = True  # from here on a failure must stop the server
        self.step = "asking the hub to start the server"
        # the hub answers only after slow_spawn_timeout (10 s) or a failure: no retry on a
        # client timeout (a retried POST would race the first), the phase timeout bounds it
        response = await self.hub.request(
            "POST",
            f"{self.user_path}/server",
            json=body,
            timeout=self.config.timeouts.get("spawn", 600),
        )
        if response.status_code not in (201, 202):
            reason = f"HTTP {response.status_code}: {_hub_message(response)}"
            if response.status_code >= 500:
                # the hub's 500 hides the spawner's error; its progress stream tells it
                try:
                    await asyncio.wait_for(self.follow_progress(), 10)
                except PhaseFailed as e:
                    reason = e.reason
                except (TimeoutError, httpx.HTTPError, ValueError):
                    pass
            raise PhaseFailed("spawn", f"the hub could not start the server: {reason}")
        if response.status_code == 202:
            url = await self.follow_progress()
        else:
            url = ((await self.server_model()) or {}).get("url") or ""
        if not url:
            raise PhaseFailed("spawn", "server reported ready without a URL")
        return self.config.proxy_url.rstrip("/") + url

    async def follow_progress(self) -> str:
        """Read the hub's progress event stream until the server is ready or failed."""
        last = "no progress event"
        # The phase timeout bounds the stream; the read timeout only has to outlive the hub's
        # keepalives.
        async with self.hub.stream(
            "GET", f"{self.user_path}/server/progress", timeout=httpx.Timeout(30, read=None)
        ) as r:
            if r.status_code != 200:
                await r.aread()
                raise PhaseFailed("spawn", f"progress: HTTP {r.status_code}: {r.text[:200]}")
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                last = event.get("message") or last
                self.step = f"waiting for the server to be ready (last event: {last})"
                if event.get("ready"):
                    ready_url = event.get("url") or ((await self.server_model()) or {}).get("url")
                    if not ready_url:
                        raise PhaseFailed("spawn", "server reported ready without a URL")
                    return str(ready_url)
                if event.get("failed"):
                    raise PhaseFailed("spawn", last)
        raise PhaseFailed("spawn", f"progress stream ended before the server was ready: {last}")

    async def start_kernel(self) -> None:
        assert self.server_url
        self.kernel = KernelClient(
            self.server_url,
            self.config.token,
            kernel_name=self.config.kernel_name,
            request_timeout=self.config.timeouts.get("kernel", 60),
        )
        self.step = "starting the kernel"
        await self.kernel.start()
        self.step = "waiting for the kernel to answer (kernel_info)"
        await self.kernel.connect()

    async def cell_output(self, phase: str, code: str) -> str:
        """Run ``code`` in the kernel; its stdout, stripped (the phase fails if it raises)."""
        assert self.kernel
        self.step = "waiting for the code to finish"
        result = await self.kernel.execute(code)
        if result.error:
            raise PhaseFailed(phase, f"code raised {result.error}")
        return result.stdout.strip()

    async def run_check(self, phase: str, code: str) -> None:
        """Run a check cell: it prints '<phase>-ok', or the reason it failed."""
        output = await self.cell_output(phase, code)
        if output != f"{phase}-ok":
            raise PhaseFailed(phase, output[:300] or "the check printed nothing")

    async def execute(self) -> None:
        checksum = hashlib.sha256(self.nonce.encode()).hexdigest()
        code = self.config.code.replace("{nonce}", self.nonce)
        expected = self.config.expected_output.replace("{sha256}", checksum)
        output = await self.cell_output("execute", code)
        if expected and output != expected:
            raise PhaseFailed("execute", f"unexpected output {output[:100]!r}, wanted {expected!r}")

    async def check_tokens(self) -> None:
        if self.config.token_file:
            code = TOKEN_FILE_CODE.format(path=self.config.token_file)
            await self.run_check("token", code)
        if self.config.token_url:
            # the cell's own timeout leaves the phase time to report the reason
            timeout = max(1.0, self.config.timeouts.get("token", 30) * 2 / 3)
            code = TOKEN_SERVICE_CODE.format(url=self.config.token_url, timeout=timeout)
            await self.run_check("token", code)

    async def shutdown_kernel(self) -> None:
        assert self.kernel
        await self.kernel.shutdown()

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> RunResult:
        started = time.time()
        profile = self.config.profile
        try:
            model = await self.phase("user", self.ensure_user)
            if (model.get("servers") or {}).get(""):
                self.log.warning("probe server already running (earlier crash?): stopping it")
                self.server_started = True
                await self.phase("cleanup", self.stop_server)
                self.server_started = False
            self.server_url = await self.phase("spawn", self.spawn)
            await self.phase("kernel", self.start_kernel)
            await self.phase("execute", self.execute)
            if self.config.check_home:
                code = HOME_CODE.format(home=self.config.check_home, nonce=self.nonce)
                await self.phase("home", lambda: self.run_check("home", code))
            if self.config.token_file or self.config.token_url:
                await self.phase("token", self.check_tokens)
            await self.phase("shutdown", self.shutdown_kernel)
            await self.phase("stop", self.stop_server)
            self.server_started = False
        except PhaseFailed as e:
            self.log.error("probe run failed in phase %s: %s", e.phase, e.reason)
            where = f" (profile {profile})" if profile else ""
            result = RunResult(
                started,
                time.time(),
                CRITICAL,
                f"{e.phase} failed{where}: {e.reason}",
                dict(self.phases),
                e.phase,
                profile,
            )
            await self.cleanup()
            return result
        finally:
            if self.kernel:
                await self.kernel.aclose()
        status, slow, message = grade(self.phases, self.config.thresholds, profile)
        return RunResult(started, time.time(), status, message, dict(self.phases), slow, profile)

    async def cleanup(self) -> None:
        """Stop the server a failed run may have left (bounded; never raises)."""
        if not self.server_started:
            return
        timeout = self.config.timeouts.get("stop", 60)
        try:
            await asyncio.wait_for(self.stop_server(), timeout)
        except Exception as e:  # the run is already CRITICAL: report, don't mask it
            self.log.error("could not stop the probe server after a failed run: %s", e)


def _hub_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message"))
    except ValueError:
        return response.text[:200]
