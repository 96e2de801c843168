"""``egi-notebooks accounting``: the hub-managed accounting service, and its ``report`` command.

One loop, every ``poll_interval`` seconds: poll the hub (sessions), ask Prometheus for usage,
write APEL messages into the dirq queue, send the queue to AMS, push finished days to EOSC.
Each step is isolated: a failing hub, Prometheus, AMS or EOSC is logged and retried at the next
cycle; nothing is lost because every step works from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import cast

from traitlets import Bool, Float, Unicode, default
from traitlets.config import Application, Configurable, catch_config_error

from ..hub import HubServiceApp
from . import DB_URL_ENV, db
from .apel import ApelRenderer, export
from .collector import Collector
from .report import day_bounds, default_range, parse_day, per_vo, to_csv, to_json, usage
from .store import Store


class DatabaseMixin(Configurable):
    db_url = Unicode(
        config=True,
        help=f"""SQLAlchemy URL of the accounting database (SQLite, or postgresql:// for
        production; the schema is created and upgraded at start-up). Default: ${DB_URL_ENV},
        else ``sqlite:///egi-notebooks-accounting.sqlite``. Pass a URL with a password through
        the environment, not the command line (the hub logs services' command lines).""",
    )

    @default("db_url")
    def _default_db_url(self) -> str:
        return os.environ.get(DB_URL_ENV) or "sqlite:///egi-notebooks-accounting.sqlite"

    config_file = Unicode("", config=True, help="Python config file to load.")

    def load_config(self) -> None:
        if self.config_file:
            # the mixin is only used with an Application, which has load_config_file
            cast(Application, self).load_config_file(self.config_file)


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite URL's database file if that file does not exist, else None."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 (a bad URL is reported when it is opened)
        return None
    database = parsed.database or ""
    if not parsed.drivername.startswith("sqlite") or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):  # a URI filename: its own rules, left to SQLite
        return None
    return None if Path(database).exists() else database


class ReportApp(DatabaseMixin, Application):
    name = "egi-notebooks-accounting-report"
    description = "Usage per VO and user for a date range (both days included, UTC)."
    date_from = Unicode(
        "", config=True, help="First day of the report (YYYY-MM-DD; default: 30 days ago)."
    )
    date_to = Unicode("", config=True, help="Last day of the report (YYYY-MM-DD; default: today).")
    format = Unicode("csv", config=True, help="csv or json.")
    by_vo = Bool(False, config=True, help="One row per VO instead of per VO and user.")
    aliases = {
        "from": "ReportApp.date_from",
        "to": "ReportApp.date_to",
        "format": "ReportApp.format",
        "db-url": "ReportApp.db_url",
        "config": "ReportApp.config_file",
    }
    flags = {"by-vo": ({"ReportApp": {"by_vo": True}}, "one row per VO")}

    @catch_config_error
    def initialize(self, argv=None) -> None:
        super().initialize(argv)
        self.load_config()

    def start(self) -> None:
        try:
            if self.format not in {"csv", "json"}:
                raise ValueError(f"--format must be csv or json, not {self.format!r}")
            default_first, today = default_range()
            first = parse_day(self.date_from, "--from") if self.date_from else default_first
            last = parse_day(self.date_to, "--to") if self.date_to else today
            start, end = day_bounds(first, last)
            missing = missing_sqlite_file(self.db_url)
            if missing:
                raise ValueError(
                    f"no accounting database at {missing} (give the service's --db-url; "
                    "a report creates no database)"
                )
        except ValueError as e:
            print(f"egi-notebooks accounting report: {e}", file=sys.stderr)
            self.exit(2)
        engine, sessions = db.open_database(self.db_url)
        try:
            rows = usage(sessions, start, end)
        finally:
            engine.dispose()
        table = per_vo(rows) if self.by_vo else rows
        sys.stdout.write(to_csv(table) if self.format == "csv" else to_json(table) + "\n")


class AccountingApp(DatabaseMixin, HubServiceApp):
    name = "egi-notebooks-accounting"
    description = "Hub-managed accounting: sessions -> APEL cloud records and EOSC metrics."

    poll_interval = Float(
        60, config=True, help="Seconds between polls of the hub (the error bound of an end)."
    )
    spool_dir = Unicode(
        "",
        config=True,
        help="dirq directory queue for ssmsend's outgoing APEL messages ('' = no APEL output).",
    )
    apel_interval = Float(
        3600, config=True, help="Seconds between two writes of APEL messages to the queue."
    )
    serve_web = Bool(True, config=True, help="Serve the admin view at the service's URL.")

    aliases = {
        "db-url": "AccountingApp.db_url",
        "config": "AccountingApp.config_file",
        "poll-interval": "AccountingApp.poll_interval",
        "spool-dir": "AccountingApp.spool_dir",
        "log-level": "Application.log_level",
    }
    subcommands = {"report": (ReportApp, ReportApp.description)}

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @default("classes")
    def _default_classes(self):
        return [Collector, ApelRenderer, *self._extra_classes()]

    def _extra_classes(self) -> list:
        from .ams import AMSSender
        from .eosc import EOSCPusher
        from .prometheus import PrometheusUsage

        return [AMSSender, PrometheusUsage, EOSCPusher]

    @catch_config_error
    def initialize(self, argv=None) -> None:
        super().initialize(argv)
        if self.subapp:
            return
        self.load_config()
        from .ams import AMSSender
        from .eosc import EOSCPusher
        from .prometheus import PrometheusUsage

        self.prometheus = PrometheusUsage(parent=self, log=self.log)
        self.eosc = EOSCPusher(parent=self, log=self.log)
        self.collector = Collector(parent=self, log=self.log)
        self.renderer = ApelRenderer(parent=self, log=self.log)
        self.ams = AMSSender(parent=self, log=self.log)
        if self.spool_dir and not self.renderer.site_name:
            self.log.critical("ApelRenderer.site_name must be set when spool_dir is set")
            self.exit(2)
        if self.ams.enabled and not self.spool_dir:
            self.log.critical("AMSSender.url is set but spool_dir is not: AMS sends the queue")
            self.exit(2)
        # a sender that cannot sign would fill the queue and send nothing APEL accepts
        problem = self.ams.configuration_problem()
        if problem:
            self.log.critical(problem)
            self.exit(2)
        self.engine, self.sessions = db.open_database(self.db_url)
        self.store = Store(self.sessions)
        # None until the first export: time.monotonic() counts from boot, so comparing it
        # with 0 would hold the first export back for apel_interval after the host boots.
        self._last_apel: float | None = None

    async def cycle(self, hub) -> None:
        """One round; each step isolated so that one failing system never stops the others."""
        try:
            await self.collector.poll(hub, self.store)
        except Exception as e:
            # an incomplete answer closes nothing: the next complete poll reconciles
            self.log.error("poll of the hub failed, sessions unchanged: %s", e)
        await self.after_poll()
        if self.spool_dir and self._apel_due():
            from .dirq_queue import OutgoingQueue

            try:
                queue = OutgoingQueue(self.spool_dir)
                outcome = await asyncio.to_thread(export, self.sessions, self.renderer, queue.add)
                self._last_apel = time.monotonic()
                if outcome.records:
                    self.log.info(
                        "APEL: %d records in %d messages", outcome.records, outcome.messages
                    )
                if self.ams.enabled:
                    await self.ams.send_queue(queue)
            except Exception as e:
                self.log.error("APEL output failed, retried next cycle: %s", e)

    def _apel_due(self) -> bool:
        """At the first cycle, then every ``apel_interval`` after the last export."""
        last = self._last_apel
        return last is None or time.monotonic() - last >= self.apel_interval

    async def after_poll(self) -> None:
        """The optional steps: usage from Prometheus, daily hours to EOSC."""
        if self.prometheus.enabled:
            try:
                await self.prometheus.enrich(self.sessions)
            except Exception as e:
                self.log.error("usage from Prometheus failed, retried next cycle: %s", e)
        if self.eosc.enabled:
            try:
                await self.eosc.push(self.sessions, self.store)
            except Exception as e:
                self.log.error("EOSC push failed, retried next cycle: %s", e)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = None
        if self.serve_web:
            from .web import start_web

            server = start_web(self)
        hub = self.make_hub_client()
        try:
            while not stop.is_set():
                await self.cycle(hub)
                try:
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
                except TimeoutError:
                    pass
        finally:
            await hub.aclose()
            if server is not None:
                server.stop()
            self.engine.dispose()
        self.log.info("accounting stopped")

    def start(self) -> None:
        if self.subapp:
            return self.subapp.start()
        asyncio.run(self.run())


def main(argv: list[str] | None = None) -> int | None:
    # fresh singletons: main() may run more than once in a process (tests, embedding)
    ReportApp.clear_instance()
    AccountingApp.clear_instance()
    try:
        AccountingApp.launch_instance(argv)
    finally:
        # the report subcommand's singleton too: another Application (a JupyterHub in the
        # same process) would find it and raise MultipleInstanceError
        ReportApp.clear_instance()
    return 0
