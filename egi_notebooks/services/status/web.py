"""Tornado handlers of the status service, served under ``$JUPYTERHUB_SERVICE_PREFIX``.

- ``<prefix>``: HTML page (JSON with ``Accept: application/json``, as the older EGI page did)
- ``<prefix>status.json``: the current status for machines (``code``, ``msg``, ``time``...)
- ``<prefix>metrics``: Prometheus text format
- ``POST <prefix>run``: run the probe now (hub admins only; ``?wait=1`` waits for the result)

Reading is public, like the EGI status page ARGO reads; starting a run needs a hub token whose
owner is an admin (or holds unfiltered ``admin:servers``).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from jupyterhub.services.auth import HubAuth
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from tornado import web

try:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as METRICS_CONTENT_TYPE
except ImportError:  # older clients: their "latest" is the 0.0.4 text format generate_latest writes
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE

from .. import service_page
from ..hub import service_application
from .results import EXIT_CODES, PHASES

if TYPE_CHECKING:
    from .app import StatusApp

COLOURS = {"OK": "#2e7d32", "WARNING": "#f9a825", "CRITICAL": "#c62828", "UNKNOWN": "#616161"}
# text on white and on each status colour that keeps a contrast of at least 4.5:1
TEXT_COLOURS = {"OK": "#2e7d32", "WARNING": "#7a4f00", "CRITICAL": "#c62828", "UNKNOWN": "#595959"}
ON_COLOUR = {"OK": "#fff", "WARNING": "#000", "CRITICAL": "#fff", "UNKNOWN": "#fff"}


class BaseHandler(web.RequestHandler):
    def initialize(self, app: StatusApp) -> None:
        self.status_app = app

    def status(self) -> dict[str, Any]:
        status = self.status_app.store.current(self.status_app.interval)
        status["running"] = self.status_app.running
        status["thresholds"] = dict(self.status_app.warning_thresholds)
        status["timeouts"] = self.status_app.probe_config(None).timeouts
        return status

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))


class StatusJSONHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(self.status())


class PageHandler(BaseHandler):
    def get(self) -> None:
        if "application/json" in self.request.headers.get("Accept", ""):
            return self.write_json(self.status())
        self.set_header("Cache-Control", "no-store")
        self.finish(render_page(self.status(), self.status_app))


class MetricsHandler(BaseHandler):
    def initialize(self, app: StatusApp, registry: CollectorRegistry | None = None) -> None:
        super().initialize(app)
        self.registry = registry if registry is not None else metrics_registry(app)

    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.finish(render_metrics(self.registry))


class RunHandler(BaseHandler):
    def check_xsrf_cookie(self) -> None:
        # token-authenticated API call; no cookies are accepted here
        pass

    async def post(self) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in {"token", "bearer"} or not token:
            raise web.HTTPError(403, "a hub API token is required")
        auth: HubAuth = self.settings["hub_auth"]
        model = await auth.user_for_token(token.strip(), sync=False)
        if not model:
            raise web.HTTPError(403, "invalid token")
        if not (model.get("admin") or "admin:servers" in model.get("scopes", [])):
            raise web.HTTPError(403, "only hub admins may start a probe run")
        task, started = self.status_app.trigger()
        self.status_app.log.info(
            "probe run requested by %s %s (%s)",
            model.get("kind", "user"),
            model.get("name"),
            "started" if started else "already running",
        )
        if self.get_argument("wait", "") in {"1", "true", "yes"}:
            result = await asyncio.shield(task)
            return self.write_json({"started": started, "result": result.to_dict()})
        self.write_json({"started": started, "running": True}, status=202)


def make_web_app(app: StatusApp) -> web.Application:
    prefix = re.escape(app.service_prefix)
    kwargs = {"app": app}
    hub_auth = HubAuth(api_url=app.hub_api_url, api_token=app.api_token, cache_max_age=60)
    handlers: list[tuple] = [
        (prefix, PageHandler, kwargs),
        (prefix + r"status\.json", StatusJSONHandler, kwargs),
        (prefix + "metrics", MetricsHandler, {**kwargs, "registry": metrics_registry(app)}),
        (prefix + "run", RunHandler, kwargs),
    ]
    if app.service_prefix != "/":
        handlers.append((prefix.rstrip("/"), web.RedirectHandler, {"url": app.service_prefix}))
    return service_application(handlers, hub_auth=hub_auth)


# -- rendering ---------------------------------------------------------------------------
def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _chart(app: StatusApp) -> str:
    """An inline SVG bar chart of recent run durations, coloured by status, with a title
    and one text alternative per bar."""
    runs = list(app.store.runs)[-48:]
    if not runs:
        return ""
    top = max(r.duration for r in runs) or 1.0
    width, height, bar = 12 * len(runs), 80, 10
    bars = []
    for i, r in enumerate(runs):
        h = max(2.0, height * r.duration / top)
        bars.append(
            f'<rect x="{i * 12}" y="{height - h:.1f}" width="{bar}" height="{h:.1f}" '
            f'fill="{COLOURS.get(r.status, "#000")}"><title>'
            f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.finished)))} UTC "
            f"{r.status} {r.duration:.1f}s</title></rect>"
        )
    return (
        f'<svg class="egi-chart" width="{width}" height="{height}" role="img" '
        f'aria-labelledby="runs-chart-title"><title id="runs-chart-title">Durations of the '
        f"last {len(runs)} runs, coloured by result; the longest took {top:.1f} s</title>"
        + "".join(bars)
        + f"</svg><p>longest: {top:.1f}s</p>"
    )


def render_page(status: dict[str, Any], app: StatusApp) -> str:
    code = status["code"]
    phases = "".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td>{v:.2f} s</td></tr>'
        for k, v in status.get("phases", {}).items()
    )
    rows = "".join(
        f"<tr><td>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.finished))} UTC</td>"
        f'<td style="color:{TEXT_COLOURS.get(r.status, "#000")}">{r.status}</td>'
        f"<td>{r.duration:.1f} s</td><td>{html.escape(r.message)}</td></tr>"
        for r in reversed(list(app.store.runs)[-20:])
    )
    running = "<p><em>A probe run is in progress.</em></p>" if status.get("running") else ""
    badge = (
        f".status{{color:{ON_COLOUR.get(code, '#fff')};background:{COLOURS.get(code, '#000')};"
        "padding:2px 12px;border-radius:4px}"
    )
    body = f"""<h1>EGI Notebooks status: <span class="status" id="status">{code}</span></h1>
<p id="message">{html.escape(status["msg"])}</p>
<p>Last run: <span id="age">{_ago(status.get("age"))}</span>
(interval {app.interval:g} s, probe user {html.escape(app.probe_user)}).</p>
{running}
<h2>Phases of the last run</h2>
<table class="table table-sm"><thead><tr><th scope="col">phase</th><th scope="col">time</th>
</tr></thead><tbody>{phases}</tbody></table>
<h2>Recent runs</h2>{_chart(app)}
<table class="table table-sm"><thead><tr><th scope="col">finished</th><th scope="col">status</th>
<th scope="col">duration</th><th scope="col">message</th></tr></thead><tbody>{rows}</tbody></table>
<p><a href="status.json">status.json</a> · <a href="metrics">metrics</a></p>"""
    return service_page.render(
        f"EGI Notebooks status: {code}", body, app.service_prefix, "status", extra_css=badge
    )


class StatusCollector(Collector):
    """The probe's state as Prometheus metrics, read from the app at every scrape."""

    prefix = "egi_notebooks_status"

    def __init__(self, app: StatusApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        p, app = self.prefix, self.app
        status = app.store.current(app.interval)
        yield GaugeMetricFamily(
            p,
            "Current probe status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (stale/none).",
            value=EXIT_CODES[status["code"]],
        )
        yield GaugeMetricFamily(
            f"{p}_running", "Whether a probe run is in progress.", value=int(app.running)
        )
        runs = CounterMetricFamily(
            f"{p}_runs",
            "Probe runs by result since the history file was created.",
            labels=["status"],
        )
        for name in ("OK", "WARNING", "CRITICAL"):
            runs.add_metric([name], app.store.counts.get(name, 0))
        yield runs
        last = app.store.last
        if last is None:
            return
        # millisecond precision, as the history file's readers get it
        yield GaugeMetricFamily(
            f"{p}_last_run_timestamp_seconds",
            "When the last run finished (Unix time).",
            value=round(last.finished, 3),
        )
        yield GaugeMetricFamily(
            f"{p}_last_run_duration_seconds",
            "Duration of the last run.",
            value=round(last.duration, 3),
        )
        phases = GaugeMetricFamily(
            f"{p}_phase_duration_seconds",
            "Duration of each phase of the last run.",
            labels=["phase"],
        )
        order = {name: i for i, name in enumerate(PHASES)}
        for name, took in sorted(last.phases.items(), key=lambda kv: order.get(kv[0], 99)):
            phases.add_metric([name], round(took, 3))
        yield phases


def metrics_registry(app: StatusApp) -> CollectorRegistry:
    """A registry of this app's metrics only (the global one holds the process's own)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(app))
    return registry


def render_metrics(registry: CollectorRegistry) -> str:
    """The Prometheus text format (0.0.4) of ``registry``."""
    return generate_latest(registry).decode("utf-8")
