"""Usage per VO and per user over a date range (shared by the admin view and the CLI)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
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


def usage(sessions: sessionmaker, start: int, end: int) -> list[UsageRow]:
    """Hours of every (VO, user) within [start, end): sessions are clipped to the range."""
    totals: dict[tuple[str, str], UsageRow] = {}
    query = (
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
    with sessions() as db:
        for vo, user, s_start, s_end, last_seen, cpus in db.execute(query):
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


def per_vo(rows: list[UsageRow]) -> list[UsageRow]:
    totals: dict[str, UsageRow] = {}
    for row in rows:
        total = totals.setdefault(row.vo, UsageRow(row.vo, "*", 0, 0.0, 0.0))
        total.sessions += row.sessions
        total.wall_hours = round(total.wall_hours + row.wall_hours, 4)
        total.cpu_hours = round(total.cpu_hours + row.cpu_hours, 4)
    return sorted(totals.values(), key=lambda r: r.vo)


FIELDS = ["vo", "user", "sessions", "wall_hours", "cpu_hours"]
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


def to_csv(rows: list[UsageRow]) -> str:
    """CSV for spreadsheets (RFC 4180): VO and user cells that would start a formula are
    prefixed with ``'`` (:func:`spreadsheet_safe`); JSON keeps the data as is."""
    out = io.StringIO()
    # With CRLF as the terminator the writer quotes any cell holding a lone CR, which
    # spreadsheets would otherwise take for the end of the row.
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in asdict(row).items()})
    return out.getvalue()


def to_json(rows: list[UsageRow]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=1)
