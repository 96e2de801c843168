"""``egi-notebooks status``: the hub-managed monitoring service.

Runs a probe (see :mod:`.probe`) every ``interval`` seconds and on demand, keeps the results
(:mod:`.results`) and serves them under ``$JUPYTERHUB_SERVICE_PREFIX`` (:mod:`.web`).

Hub configuration (no ``admin: true``; the role is the least the probe needs, every scope
filtered to the probe user or its marker group)::

    c.JupyterHub.services.append({
        "name": "status",
        "command": ["egi-notebooks", "status", "--StatusApp.proxy_url=http://proxy-public"],
        "url": "http://hub:10101",           # z2jh: the service runs in the hub pod
        "api_token": "<openssl rand -hex 32>", # optional: a stable token across restarts
    })
    c.JupyterHub.load_roles.append({
        "name": "egi-notebooks-status",
        "services": ["status"],
        "scopes": [
            "admin:users!user=egi-notebooks-probe",   # create the probe user if missing
            "servers!user=egi-notebooks-probe",       # start, stop, read its server + progress
            "access:servers!user=egi-notebooks-probe",  # talk to its server (kernels API)
            "admin:groups!group=egi-notebooks-probe",  # create the marker group, add the user
        ],
    })

Why these: creating a user needs ``admin:users`` (JupyterHub filters it by user *name*, so
it works before the user exists); ``servers`` covers ``start:servers``, ``delete:servers`` and
``read:servers`` (the progress stream); the marker group may not exist yet, and creating a
group needs ``admin:groups`` (filtered by group name). In z2jh the same goes under
``hub.services.status`` (command, url, apiToken) and ``hub.loadRoles.egi-notebooks-status``.
Reading the page, ``status.json`` and ``metrics`` needs no login; ``POST run`` needs a token of a
hub admin.
"""

from __future__ import annotations

import asyncio
import time

from traitlets import Bool, Dict, Float, Integer, List, Unicode, default

from ..hub import HubServiceApp
from . import DEFAULT_PROBE_USER, PROBE_GROUP
from .probe import Probe, ProbeConfig
from .results import CRITICAL, OK, WARNING, ResultStore, RunResult

DEFAULT_CODE = "import hashlib\nprint(hashlib.sha256(b'{nonce}').hexdigest())\n"

DEFAULT_TIMEOUTS = {
    "user": 30,
    "cleanup": 120,
    "spawn": 600,
    "kernel": 120,
    "execute": 60,
    "home": 30,
    "token": 30,
    "shutdown": 30,
    "stop": 120,
}

DEFAULT_THRESHOLDS = {"spawn": 300, "kernel": 60, "execute": 10, "stop": 60}

SEVERITY = {OK: 0, WARNING: 1, CRITICAL: 2}


class StatusApp(HubServiceApp):
    name = "egi-notebooks-status"
    description = "EGI Notebooks monitoring probe: runs code in a user notebook every interval."

    interval = Float(3600, config=True, help="Seconds between two scheduled probe runs.")
    first_run_delay = Float(
        30,
        config=True,
        help="Seconds to wait after start-up before the first scheduled run "
        "(lets the hub finish starting; a negative value disables scheduled runs).",
    )
    probe_user = Unicode(
        DEFAULT_PROBE_USER,
        config=True,
        help=f"Hub user the probe runs as; created if missing and added to the "
        f"{PROBE_GROUP!r} group so that accounting leaves it out.",
    )
    proxy_url = Unicode(
        "http://proxy-public",
        config=True,
        help="URL of the hub's proxy as the service reaches it; single-user servers are "
        "reached through it (z2jh: http://proxy-public).",
    )
    profiles = List(
        Unicode(),
        config=True,
        help="Profile slugs to probe, one server start each per run (empty: the default).",
    )
    code = Unicode(
        DEFAULT_CODE,
        config=True,
        help="Code run in the kernel; '{nonce}' is replaced by a fresh random string.",
    )
    expected_output = Unicode(
        "{sha256}",
        config=True,
        help="Expected stdout of `code` (stripped); '{sha256}' is the SHA-256 hex of the "
        "nonce. Empty: only check that the code does not raise.",
    )
    kernel_name = Unicode("python3", config=True, help="Kernel spec name to start.")
    check_home = Unicode(
        "",
        config=True,
        help="If set (e.g. '~'), check that a file can be written in this directory.",
    )
    token_file = Unicode(
        "",
        config=True,
        help="If set (EGISpawner: '/var/run/secrets/egi.eu/access_token'), check that the "
        "token directory (the token Secret volume) is mounted in the notebook and the file, "
        "if there, is not empty. The probe user never signed in with Check-in, so its "
        "Secret has no keys and the file is normally absent.",
    )
    token_url = Unicode(
        "",
        config=True,
        help="If set (e.g. 'http://proxy-public/services/tokens/token', as notebooks reach "
        "it), check from the kernel that the tokens service answers the server's API token "
        "with a token, or with 404 'no valid access token', what the probe user gets: the "
        "service gives that answer only after checking the caller's token with the hub and "
        "asking the hub for the user's token. 401, 403, 5xx, any other 404 or no answer "
        "fail the run.",
    )
    shutdown_via_server = Bool(
        True,
        config=True,
        help="Before asking the hub to stop the probe server, ask the server to shut itself "
        "down through jupyter-server's REST API (POST /api/shutdown): it cleans up its "
        "kernels and exits at once, where the hub's stop would signal it and poll its "
        "process with a growing back-off. Best effort: the hub's stop always follows.",
    )
    timeouts = Dict(
        value_trait=Float(),
        config=True,
        help=f"Timeout in seconds per phase (merged into {DEFAULT_TIMEOUTS}).",
    )
    warning_thresholds = Dict(
        value_trait=Float(),
        config=True,
        help="Seconds per phase (or 'total') above which a successful run is WARNING "
        f"(default {DEFAULT_THRESHOLDS}; an empty dict keeps the defaults).",
    )

    @default("warning_thresholds")
    def _default_thresholds(self) -> dict[str, float]:
        return dict(DEFAULT_THRESHOLDS)

    history_file = Unicode(
        "egi-notebooks-status.json",
        config=True,
        help="File keeping the last runs, so a restart keeps history (empty: memory only).",
    )
    history_size = Integer(48, config=True, help="How many runs to keep.")

    aliases = {
        "interval": "StatusApp.interval",
        "first-run-delay": "StatusApp.first_run_delay",
        "probe-user": "StatusApp.probe_user",
        "proxy-url": "StatusApp.proxy_url",
        "history-file": "StatusApp.history_file",
        "log-level": "Application.log_level",
    }

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        self.store = ResultStore(self.history_file or None, self.history_size)
        self.run_task: asyncio.Task | None = None
        self.run_started: float | None = None
        unknown = set(self.timeouts) - set(DEFAULT_TIMEOUTS)
        if unknown:
            self.log.critical("StatusApp.timeouts: unknown phases %s", sorted(unknown))
            raise SystemExit(2)

    # -- runs ------------------------------------------------------------------------------
    def probe_config(self, profile: str | None) -> ProbeConfig:
        return ProbeConfig(
            user=self.probe_user,
            proxy_url=self.proxy_url,
            token=self.api_token,
            timeouts={**DEFAULT_TIMEOUTS, **self.timeouts},
            thresholds=dict(self.warning_thresholds),
            code=self.code,
            expected_output=self.expected_output,
            kernel_name=self.kernel_name,
            profile=profile,
            check_home=self.check_home,
            token_file=self.token_file,
            token_url=self.token_url,
            shutdown_via_server=self.shutdown_via_server,
        )

    async def probe_once(self) -> RunResult:
        """One run: every configured profile in turn, combined into one result."""
        self.run_started = time.time()
        results = []
        async with self.make_hub_client() as hub:
            profiles: list[str | None] = [*self.profiles] or [None]
            for profile in profiles:
                probe = Probe(hub, self.probe_config(profile), self.log)
                results.append(await probe.run())
        return combine(results)

    async def _run_and_record(self) -> RunResult:
        try:
            result = await self.probe_once()
        except Exception as e:  # a bug must still leave a CRITICAL result, not silence
            self.log.exception("probe run crashed")
            now = time.time()
            result = RunResult(self.run_started or now, now, CRITICAL, f"probe crashed: {e!r}")
        self.store.add(result)
        self.log.info("probe run: %s - %s", result.status, result.message)
        return result

    def trigger(self) -> tuple[asyncio.Task, bool]:
        """Start a run unless one is running; (the run's task, whether it was started now).

        Never two runs at once: callers arriving during a run get the running one.
        """
        if self.run_task is not None and not self.run_task.done():
            return self.run_task, False
        self.run_task = asyncio.ensure_future(self._run_and_record())
        return self.run_task, True

    @property
    def running(self) -> bool:
        return self.run_task is not None and not self.run_task.done()

    async def scheduler(self) -> None:
        if self.first_run_delay < 0:
            return
        await asyncio.sleep(self.first_run_delay)
        while True:
            started = time.monotonic()
            task, _ = self.trigger()
            await asyncio.shield(task)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    # -- service ---------------------------------------------------------------------------
    async def serve(self) -> None:
        from tornado.httpserver import HTTPServer

        from .backup import add_backup_status
        from .web import make_web_app

        web_app = make_web_app(self)
        add_backup_status(web_app, self, self.service_prefix)
        server = HTTPServer(web_app, xheaders=True)
        ip, port = self.listen(server)
        self.log.info("status service at %s%s, listening on %s:%s (probe user %s, interval %gs)",
                      self.service_url, self.service_prefix, ip, port, self.probe_user,
                      self.interval)  # fmt: skip
        try:
            await self.scheduler()
            await asyncio.Event().wait()
        finally:
            server.stop()

    def start(self) -> None:
        if not self.api_token:  # fail early, with one clear line
            self.log.critical("no hub API token: set JUPYTERHUB_API_TOKEN or api_token")
            raise SystemExit(2)
        asyncio.run(self.serve())


def combine(results: list[RunResult]) -> RunResult:
    if len(results) == 1:
        return results[0]
    worst = max(results, key=lambda r: SEVERITY.get(r.status, 2))
    phases = {f"{r.profile}:{name}": took for r in results for name, took in r.phases.items()}
    return RunResult(
        started=results[0].started,
        finished=results[-1].finished,
        status=worst.status,
        message="; ".join(r.message for r in results),
        phases=phases,
        phase=worst.phase,
        profile=worst.profile,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        StatusApp.launch_instance(argv)
    except KeyboardInterrupt:
        pass
    return 0
