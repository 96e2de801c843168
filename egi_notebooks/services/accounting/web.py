"""The admin view at the service's URL: usage for a date range (default: the last 30 days) as
a page in the hub's look (sessions and hours per day stacked by VO and the top users as SVG
charts drawn here, tables per VO and per user) or a CSV download. Hub OAuth; hub admins only."""

from __future__ import annotations

import asyncio
import os
from datetime import date
from html import escape
from typing import TYPE_CHECKING

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer

from .. import service_page
from ..hub import service_application
from . import charts
from .report import (
    DayUsage,
    UsageRow,
    VOUsageRow,
    daily_usage,
    day_bounds,
    default_range,
    parse_day,
    per_vo,
    to_csv,
    usage,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import AccountingApp

MAX_RANGE_DAYS = 3700  # about ten years


def table(rows: list[UsageRow] | list[VOUsageRow], caption: str) -> str:
    per_user = bool(rows) and isinstance(rows[0], UsageRow)
    cols = ["VO", "User", "Sessions", "Hours", "CPU hours"] if per_user else None
    cols = cols or ["VO", "Sessions", "Hours", "CPU hours"]
    head = "".join(f'<th scope="col">{c}</th>' for c in cols)
    body = []
    for r in rows:
        user = f"<td>{escape(r.user)}</td>" if isinstance(r, UsageRow) else ""
        body.append(
            f"<tr><td>{escape(r.vo or '(no VO)')}</td>{user}<td>{r.sessions}</td>"
            f"<td>{r.wall_hours:.2f}</td><td>{r.cpu_hours:.2f}</td></tr>"
        )
    if not rows:
        body.append(f'<tr><td colspan="{len(cols)}">No sessions in this range.</td></tr>')
    return (
        f'<table class="table table-sm"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def check_range(first_text: str, last_text: str) -> tuple[date, date, str]:
    """(first, last, error): the range from the form; an error says what is wrong with it
    (then first and last are the default range, for the form to show)."""
    default_first, today = default_range()
    try:
        first = parse_day(first_text, "From") if first_text else default_first
        last = parse_day(last_text, "To") if last_text else today
        day_bounds(first, last)
    except ValueError as e:
        return default_first, today, str(e)
    if (last - first).days > MAX_RANGE_DAYS:
        return default_first, today, "The range is longer than ten years: choose a shorter one."
    return first, last, ""


def form(first: date, last: date, first_text: str, last_text: str, error: str) -> str:
    """The range form; after an error it shows what was typed, marked invalid."""
    shown_first = escape(first_text) if error else str(first)
    shown_last = escape(last_text) if error else str(last)
    invalid = ' aria-invalid="true" aria-describedby="range-error"' if error else ""
    message = f'<p class="alert alert-danger" id="range-error" role="alert">{escape(error)}</p>'
    return f"""<form method="get" class="row g-3 align-items-end" aria-label="Date range">
{message if error else ""}
<div class="col-auto"><label class="form-label" for="from">From</label>
<input class="form-control" type="date" id="from" name="from" value="{shown_first}"
 required{invalid}></div>
<div class="col-auto"><label class="form-label" for="to">To</label>
<input class="form-control" type="date" id="to" name="to" value="{shown_last}"
 required{invalid}></div>
<div class="col-auto"><button class="btn btn-egi" type="submit">Show</button></div>
</form>"""


def render_page(
    first: date,
    last: date,
    rows: list[UsageRow],
    days: list[DayUsage],
    service_prefix: str,
    error: str = "",
    typed: tuple[str, str] = ("", ""),
) -> str:
    query = f"from={first}&amp;to={last}"
    if error:
        usage_html = ""
    else:
        usage_html = f"""<p>Downloads: <a href="?{query}&amp;format=csv">CSV per user</a> ·
<a href="?{query}&amp;format=csv&amp;by=vo">CSV per VO</a></p>
<h2>Sessions per day</h2>
{
            charts.stacked_days(
                days,
                first,
                last,
                "sessions",
                "sessions",
                "sessions-chart",
                f"Sessions per day by VO, {first} to {last}",
            )
        }
<h2>Hours per day</h2>
{
            charts.stacked_days(
                days,
                first,
                last,
                "wall_hours",
                "hours",
                "hours-chart",
                f"Hours per day by VO, {first} to {last}",
            )
        }
<h2>Top users</h2>
{charts.top_users(rows, "users-chart")}
<h2>Per VO</h2>{table(per_vo(rows), f"Usage per VO, {first} to {last}")}
<h2>Per user</h2>{table(rows, f"Usage per VO and user, {first} to {last}")}"""
    body = f"""<h1>Notebook usage {first} to {last}</h1>
<p>Days in UTC, both included; hours are wall-clock hours of the servers.</p>
{form(first, last, typed[0], typed[1], error)}
{usage_html}"""
    return service_page.render(
        "EGI Notebooks accounting",
        body,
        service_prefix,
        "accounting",
        extra_css=charts.CHART_CSS,
    )


class UsageHandler(HubOAuthenticated, web.RequestHandler):
    def initialize(self, accounting: AccountingApp) -> None:
        self.accounting = accounting

    @web.authenticated
    async def get(self) -> None:
        if not self.current_user.get("admin"):
            raise web.HTTPError(403, "the accounting view is for hub admins only")
        typed = (self.get_argument("from", ""), self.get_argument("to", ""))
        first, last, error = check_range(*typed)
        csv_wanted = self.get_argument("format", "") == "csv"
        if error and csv_wanted:
            raise web.HTTPError(400, error)
        if error:
            self.set_status(400)
            self.finish(
                render_page(first, last, [], [], self.accounting.service_prefix, error, typed)
            )
            return
        start, end = day_bounds(first, last)
        rows = await asyncio.to_thread(usage, self.accounting.sessions, start, end)
        if csv_wanted:
            by_vo = self.get_argument("by", "") == "vo"
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header(
                "Content-Disposition",
                f'attachment; filename="notebooks-usage-{first}-{last}.csv"',
            )
            self.finish(to_csv(per_vo(rows) if by_vo else rows))
            return
        days = await asyncio.to_thread(daily_usage, self.accounting.sessions, first, last)
        self.finish(render_page(first, last, rows, days, self.accounting.service_prefix))


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
