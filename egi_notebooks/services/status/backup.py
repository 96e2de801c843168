"""Backup status in the status service: what the last backup runs left in their status file
(``egi-notebooks backup`` writes it; see :mod:`egi_notebooks.backup.status`).

- ``<prefix>backup.json``: the overall state (OK/WARNING/CRITICAL/UNKNOWN, as the Nagios check
  ``egi-notebooks backup check`` computes it), the last run and the counts; with the token of a
  hub admin also every volume (user, claim, last success, last error).
- ``<prefix>backup/metrics``: ``egi_notebooks_backup_*`` gauges (a second scrape path beside
  the probe's ``metrics``: the backup job and the probe fail independently). Per-user series only
  with ``BackupStatus.metrics_per_user`` (the status pages are public; usernames are personal
  data).

Configured as ``c.BackupStatus.status_file = "/srv/backup/egi-notebooks-backup.json"`` (or
``--BackupStatus.status_file=...`` on the status service's command line); no status file, no
backup status.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from tornado import web
from traitlets import Bool, Float, Unicode
from traitlets.config import Configurable

from ...backup.status import EXIT_CODES, UNKNOWN, evaluate, load

try:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # older clients: their "latest" is the 0.0.4 text format
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE

log = logging.getLogger(__name__)


class BackupStatus(Configurable):
    """Reads the backup status file at every request (the backup job rewrites it atomically)."""

    status_file = Unicode(
        "",
        config=True,
        help="The status file `egi-notebooks backup` writes (its BackupApp.status_file), on "
        "a volume the status service mounts; empty: no backup status.",
    )
    warning_days = Float(
        1, config=True, help="WARNING when a volume's last successful backup is older (days)."
    )
    critical_days = Float(
        3, config=True, help="CRITICAL when a volume's last successful backup is older (days)."
    )
    metrics_per_user = Bool(
        False,
        config=True,
        help="Also export one series per volume, labelled with the user and the claim.",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.status_file)

    def report(self, per_volume: bool = False) -> dict[str, Any]:
        try:
            data = load(self.status_file)
        except (OSError, ValueError) as e:
            return {"status": UNKNOWN, "code": EXIT_CODES[UNKNOWN],
                    "message": f"cannot read the backup status: {e}"}  # fmt: skip
        state, message, rows = evaluate(data, self.warning_days, self.critical_days)
        run = data.get("last_run") or {}
        report: dict[str, Any] = {
            "status": state,
            "code": EXIT_CODES[state],
            "message": message,
            "time": time.time(),
            "volumes_total": len(rows),
            "volumes_stale": sum(r["state"] != "OK" for r in rows),
            "volumes_failed": sum(bool(r.get("last_error")) for r in rows),
            "last_run": {k: run.get(k) for k in ("started", "finished", "ok", "failed")},
            "check": data.get("check"),
            "warning_days": self.warning_days,
            "critical_days": self.critical_days,
        }
        if per_volume:
            report["volumes"] = [
                {
                    k: r.get(k)
                    for k in (
                        "user",
                        "claim",
                        "vo",
                        "kind",
                        "last_success",
                        "age",
                        "state",
                        "last_snapshot",
                        "last_error",
                        "last_error_kind",
                        "consecutive_failures",
                    )
                }  # fmt: skip
                for r in rows
            ]
        return report


class BackupJSONHandler(web.RequestHandler):
    def initialize(self, backup: BackupStatus) -> None:
        self.backup = backup

    async def is_admin(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in {"token", "bearer"} or not token.strip():
            return False
        try:
            model = await self.settings["hub_auth"].user_for_token(token.strip(), sync=False)
        except Exception as e:  # the hub is down: answer as to anyone, without the volumes
            log.warning("backup.json: cannot check a token with the hub: %s", e)
            return False
        return bool(model and (model.get("admin") or "admin:users" in model.get("scopes", [])))

    async def get(self) -> None:
        report = self.backup.report(per_volume=await self.is_admin())
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(report, ensure_ascii=False))


class BackupMetricsHandler(web.RequestHandler):
    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(generate_latest(self.registry))


class BackupCollector(Collector):
    prefix = "egi_notebooks_backup"

    def __init__(self, backup: BackupStatus) -> None:
        self.backup = backup

    def collect(self) -> Iterator[Metric]:
        p = self.prefix
        try:
            data = load(self.backup.status_file)
        except (OSError, ValueError):
            yield GaugeMetricFamily(p, "Backup status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
                                    value=EXIT_CODES[UNKNOWN])  # fmt: skip
            return
        state, _, rows = evaluate(data, self.backup.warning_days, self.backup.critical_days)
        yield GaugeMetricFamily(p, "Backup status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
                                value=EXIT_CODES[state])  # fmt: skip
        yield GaugeMetricFamily(f"{p}_volumes", "Volumes in the backup status.", value=len(rows))
        yield GaugeMetricFamily(f"{p}_volumes_failed", "Volumes whose last backup failed.",
                                value=sum(bool(r.get("last_error")) for r in rows))  # fmt: skip
        yield GaugeMetricFamily(f"{p}_volumes_never", "Volumes never backed up successfully.",
                                value=sum(r["age"] is None for r in rows))  # fmt: skip
        successes = [float(r["last_success"]) for r in rows if r.get("last_success")]
        if successes:
            yield GaugeMetricFamily(
                f"{p}_oldest_success_timestamp_seconds",
                "The oldest of the volumes' last successful backups (Unix time).",
                value=round(min(successes), 3),
            )
        run = data.get("last_run") or {}
        if run.get("finished"):
            yield GaugeMetricFamily(f"{p}_last_run_timestamp_seconds",
                                    "When the last backup run finished (Unix time).",
                                    value=round(float(run["finished"]), 3))  # fmt: skip
        check = data.get("check") or {}
        if check:
            yield GaugeMetricFamily(f"{p}_check_ok", "Whether the last restic check passed.",
                                    value=int(bool(check.get("ok"))))  # fmt: skip
        if not self.backup.metrics_per_user:
            return
        last = GaugeMetricFamily(f"{p}_last_success_timestamp_seconds",
                                 "Last successful backup of a volume (Unix time).",
                                 labels=["user", "claim"])  # fmt: skip
        failing = GaugeMetricFamily(f"{p}_consecutive_failures",
                                    "Failed backups of a volume since its last success.",
                                    labels=["user", "claim"])  # fmt: skip
        for r in rows:
            labels = [str(r.get("user") or ""), r["claim"]]
            if r.get("last_success"):
                last.add_metric(labels, round(float(r["last_success"]), 3))
            failing.add_metric(labels, int(r.get("consecutive_failures") or 0))
        yield last
        yield failing


def add_backup_status(web_app: web.Application, parent: Configurable, prefix: str) -> bool:
    """Serve the backup status on ``web_app`` under ``prefix`` (a URL prefix ending in /):
    ``backup.json`` and ``backup/metrics``; nothing without a status file. Whether it did."""
    backup = BackupStatus(parent=parent)
    if not backup.enabled:
        return False
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BackupCollector(backup))
    escaped = re.escape(prefix)
    web_app.add_handlers(
        r".*",
        [
            (escaped + r"backup\.json", BackupJSONHandler, {"backup": backup}),
            (escaped + r"backup/metrics", BackupMetricsHandler, {"registry": registry}),
        ],
    )
    return True
