"""The admin view's page: daily usage per VO, the charts (SVG drawn on the server), the range
form with its checks, and the hub's look (its stylesheet and a way back to the hub)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from egi_notebooks.services.accounting.report import DayUsage, UsageRow, daily_usage
from egi_notebooks.services.accounting.store import Observation, Store, make_vmuuid
from egi_notebooks.services.accounting.web import check_range, render_page

DAY1 = date(2026, 3, 1)


def at(day: date, hour: float) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp() + hour * 3600)


def test_a_session_over_midnight_counts_on_both_days(sessions):
    store = Store(sessions)
    start = at(DAY1, 23)
    obs = Observation(make_vmuuid("t", "alice", "", start), "alice", "", start, "vo.a")
    store.apply_poll([obs], at(DAY1, 25))  # seen running until 01:00 the next day
    store.apply_poll([], at(DAY1, 25) + 1)
    days = daily_usage(sessions, DAY1, DAY1 + timedelta(days=2))
    assert [(d.day, d.vo, d.sessions, round(d.wall_hours, 2)) for d in days] == [
        (DAY1, "vo.a", 1, 1.0),
        (DAY1 + timedelta(days=1), "vo.a", 1, 1.0),
    ]
    # clipped to the range asked for
    (only,) = daily_usage(sessions, DAY1 + timedelta(days=1), DAY1 + timedelta(days=1))
    assert only.wall_hours == 1.0


def test_the_range_defaults_to_the_last_30_days_and_is_checked():
    today = datetime.now(UTC).date()
    assert check_range("", "") == (today - timedelta(days=29), today, "")
    assert check_range("2026-03-01", "2026-03-05") == (date(2026, 3, 1), date(2026, 3, 5), "")
    assert "must be a date" in check_range("yesterday", "")[2]
    assert "before it starts" in check_range("2026-03-05", "2026-03-01")[2]
    assert "ten years" in check_range("2000-01-01", "2026-01-01")[2]


def page() -> str:
    rows = [
        UsageRow("vo.a", "alice", 3, 5.0, 10.0),
        UsageRow("vo.b", "bob", 1, 2.5, 2.5),
        UsageRow("vo.a", "<carol>", 1, 1.0, 1.0),
    ]
    days = [
        DayUsage(DAY1, "vo.a", 2, 4.0),
        DayUsage(DAY1, "vo.b", 1, 2.5),
        DayUsage(DAY1 + timedelta(days=2), "vo.a", 2, 2.0),
    ]
    return render_page(DAY1, DAY1 + timedelta(days=6), rows, days, "/services/accounting/")


def test_the_page_has_charts_with_text_alternatives():
    html = page()
    charts = re.findall(r'<svg class="egi-chart" id="([^"]+)"[^>]*role="img"', html)
    assert charts == ["sessions-chart", "hours-chart", "users-chart"]
    for chart in charts:
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in html
        assert f'<title id="{chart}-title">' in html and f'<desc id="{chart}-desc">' in html
    # stacked by VO: one bar per VO and day, each with its numbers
    assert "<title>2026-03-01: vo.a 4 hours</title>" in html
    assert "<title>2026-03-01: vo.b 2.5 hours</title>" in html
    assert "<title>2026-03-01: vo.b 1 sessions</title>" in html
    assert "<title>alice: 5.00 hours</title>" in html  # top users
    assert "<carol>" not in html and "&lt;carol&gt;" in html
    assert "vo.a</li>" in html and "vo.b</li>" in html  # the legend in text


def test_the_page_keeps_the_csv_downloads_and_the_hub_look():
    html = page()
    assert '?from=2026-03-01&amp;to=2026-03-07&amp;format=csv"' in html
    assert '?from=2026-03-01&amp;to=2026-03-07&amp;format=csv&amp;by=vo"' in html
    assert '<link rel="stylesheet" href="/hub/static/css/style.min.css">' in html
    assert 'href="/hub/home"' in html and 'href="/services/status/"' in html
    assert '<a class="nav-link" href="/services/accounting/" aria-current="page">' in html
    assert '<html lang="en">' in html and "<main" in html
    assert 'type="date" id="from" name="from" value="2026-03-01"' in html


def test_a_bad_range_is_explained_in_the_form():
    first, last, error = check_range("2026-03-05", "2026-03-01")
    html = render_page(first, last, [], [], "/services/accounting/", error, ("2026-03-05", "x"))
    assert 'role="alert"' in html and "before it starts" in html
    assert 'value="2026-03-05"' in html and 'aria-invalid="true"' in html
    assert "<svg" not in html
