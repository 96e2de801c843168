"""Usage per VO and per user over a date range (shared by the admin view and the CLI)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from .models import Session


@dataclass
class UsageRow:
    vo: str
    user: str
    sessions: int
    wall_hours: float
    cpu_hours: float  # requested CPUs x wall time


@dataclass
class VOUsageRow:
    """The totals of one VO (no user column: every user of the VO)."""

    vo: str
    sessions: int
    wall_hours: float
    cpu_hours: float


@dataclass
class DayUsage:
    """One UTC day of one VO: sessions running that day and their hours within it."""

    day: date
    vo: str
    sessions: int
    wall_hours: float


DEFAULT_DAYS = 30  # the range shown and reported when none is given: the last 30 days


def default_range(today: date | None = None) -> tuple[date, date]:
    """The last ``DEFAULT_DAYS`` days, today included (UTC)."""
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a date like 2026-11-05, not {value!r}") from None


def day_bounds(first: date, last: date) -> tuple[int, int]:
    """[first 00:00, last+1 00:00) in UTC epoch seconds; both days included."""
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    return int(start.timestamp()), int(end.timestamp())


def _session_query(start: int, end: int):  # noqa: ANN202 (a SQLAlchemy Select)
    """Every session that ran at some time within [start, end)."""
    return (
        select(
            Session.primary_vo,
            Session.user,
            Session.start_time,
            Session.end_time,
            Session.last_seen,
            Session.cpu_request,
        )  # fmt: skip
        .where(Session.start_time < end)
        .where(
            (Session.end_time.is_(None) & (Session.last_seen > start)) | (Session.end_time > start)
        )
        .execution_options(yield_per=2000)
    )


def usage(sessions: sessionmaker, start: int, end: int) -> list[UsageRow]:
    """Hours of every (VO, user) within [start, end): sessions are clipped to the range."""
    totals: dict[tuple[str, str], UsageRow] = {}
    with sessions() as db:
        for vo, user, s_start, s_end, last_seen, cpus in db.execute(_session_query(start, end)):
            stop = s_end if s_end is not None else last_seen
            seconds = max(0, min(stop, end) - max(s_start, start))
            key = (vo or "", user)
            row = totals.setdefault(key, UsageRow(vo or "", user, 0, 0.0, 0.0))
            row.sessions += 1
            row.wall_hours += seconds / 3600
            row.cpu_hours += seconds * (cpus or 1) / 3600
    result = sorted(totals.values(), key=lambda r: (r.vo, r.user))
    for row in result:
        row.wall_hours = round(row.wall_hours, 4)
        row.cpu_hours = round(row.cpu_hours, 4)
    return result


def daily_usage(sessions: sessionmaker, first: date, last: date) -> list[DayUsage]:
    """Per UTC day and VO, from ``first`` to ``last`` (both included): the sessions that ran
    that day and their hours within it (a session over midnight counts on both days)."""
    start, end = day_bounds(first, last)
    totals: dict[tuple[date, str], DayUsage] = {}
    with sessions() as db:
        for vo, _user, s_start, s_end, last_seen, _cpus in db.execute(_session_query(start, end)):
            stop = min(s_end if s_end is not None else last_seen, end)
            begin = max(s_start, start)
            day_start = start + (begin - start) // 86400 * 86400
            while day_start < stop:
                seconds = min(stop, day_start + 86400) - max(begin, day_start)
                day = datetime.fromtimestamp(day_start, UTC).date()
                row = totals.setdefault((day, vo or ""), DayUsage(day, vo or "", 0, 0.0))
                row.sessions += 1
                row.wall_hours += max(0, seconds) / 3600
                day_start += 86400
    result = sorted(totals.values(), key=lambda r: (r.day, r.vo))
    for row in result:
        row.wall_hours = round(row.wall_hours, 4)
    return result


def per_vo(rows: list[UsageRow]) -> list[VOUsageRow]:
    totals: dict[str, VOUsageRow] = {}
    for row in rows:
        total = totals.setdefault(row.vo, VOUsageRow(row.vo, 0, 0.0, 0.0))
        total.sessions += row.sessions
        total.wall_hours = round(total.wall_hours + row.wall_hours, 4)
        total.cpu_hours = round(total.cpu_hours + row.cpu_hours, 4)
    return sorted(totals.values(), key=lambda r: r.vo)


# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell that would start a formula gets a leading ``'``; numbers are kept.

    Only text is touched: counts and hours are numbers (never negative, sessions are
    clipped at zero), and a ``-`` there is a sign a spreadsheet must still read as one.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: list[UsageRow] | list[VOUsageRow]) -> str:
    """CSV for spreadsheets (RFC 4180): VO and user cells that would start a formula are
    prefixed with ``'`` (:func:`spreadsheet_safe`); JSON keeps the data as is. Per-VO rows
    have no user column."""
    out = io.StringIO()
    row_type = type(rows[0]) if rows else UsageRow
    # With CRLF as the terminator the writer quotes any cell holding a lone CR, which
    # spreadsheets would otherwise take for the end of the row.
    writer = csv.DictWriter(out, fieldnames=list(fields_of(row_type)), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in asdict(row).items()})
    return out.getvalue()


def fields_of(row_type: type) -> list[str]:
    return [f.name for f in dataclass_fields(row_type)]


def to_json(rows: list[UsageRow] | list[VOUsageRow]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=1)
