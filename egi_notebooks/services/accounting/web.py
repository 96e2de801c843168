"""The admin view at the service's URL: usage per VO and per user for a date range, as a page
or a CSV download. Hub OAuth; hub admins only."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer

from ..hub import service_application
from .report import day_bounds, parse_day, per_vo, to_csv, usage

if TYPE_CHECKING:  # pragma: no cover
    from .app import AccountingApp

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>EGI Notebooks accounting</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head>
<body><h1>Notebook usage {first} to {last}</h1>
<form method="get"><label>From <input type="date" name="from" value="{first}"></label>
<label>To <input type="date" name="to" value="{last}"></label> <button>Show</button>
<a href="?from={first}&amp;to={last}&amp;format=csv">CSV (per user)</a>
<a href="?from={first}&amp;to={last}&amp;format=csv&amp;by=vo">CSV (per VO)</a></form>
<h2>Per VO</h2>{per_vo}<h2>Per user</h2>{per_user}</body></html>
"""


def table(rows) -> str:
    head = "<tr><th>VO</th><th>User</th><th>Sessions</th><th>Hours</th><th>CPU hours</th></tr>"
    body = "".join(
        f"<tr><td>{escape(r.vo or '(none)')}</td><td>{escape(r.user)}</td><td>{r.sessions}</td>"
        f"<td>{r.wall_hours:.2f}</td><td>{r.cpu_hours:.2f}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


class UsageHandler(HubOAuthenticated, web.RequestHandler):
    def initialize(self, accounting: AccountingApp) -> None:
        self.accounting = accounting

    @web.authenticated
    async def get(self) -> None:
        if not self.current_user.get("admin"):
            raise web.HTTPError(403, "the accounting view is for hub admins only")
        today = datetime.now(UTC).date()
        try:
            first = parse_day(self.get_argument("from", str(today.replace(day=1))), "from")
            last = parse_day(self.get_argument("to", str(today)), "to")
            start, end = day_bounds(first, last)
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        if end - start > timedelta(days=3700).total_seconds():
            raise web.HTTPError(400, "date range longer than ten years")
        rows = await asyncio.to_thread(usage, self.accounting.sessions, start, end)
        if self.get_argument("format", "") == "csv":
            by_vo = self.get_argument("by", "") == "vo"
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header(
                "Content-Disposition",
                f'attachment; filename="notebooks-usage-{first}-{last}.csv"',
            )
            self.finish(to_csv(per_vo(rows) if by_vo else rows))
            return
        self.finish(
            PAGE.format(first=first, last=last, per_vo=table(per_vo(rows)), per_user=table(rows))
        )


def make_app(accounting: AccountingApp) -> web.Application:
    prefix = accounting.service_prefix
    return service_application(
        [
            (prefix, UsageHandler, {"accounting": accounting}),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )


def start_web(accounting: AccountingApp) -> HTTPServer:
    server = HTTPServer(make_app(accounting), xheaders=True)
    ip, port = accounting.listen(server)
    accounting.log.info(
        "admin view at %s%s, listening on %s:%s",
        accounting.service_url, accounting.service_prefix, ip, port,
    )  # fmt: skip
    return server
