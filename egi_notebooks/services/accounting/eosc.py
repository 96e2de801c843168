"""Daily hours per user, VO and flavor pushed to the EOSC accounting service.

``POST {accounting_url}/accounting-system/installations/{installation_id}/metrics`` with a
client-credentials token. A day is pushed only once it is over AND the hub was polled
completely after its end (so no session of that day can still change). Every pushed
(day, user, VO, flavor) is remembered in ``eosc_pushes`` in the same step as its success:
re-runs skip it, so nothing is counted twice; failures are retried with bounded backoff and
then left for the next cycle.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from traitlets import Dict, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from ...retry import retry
from .models import EOSCPush, Session
from .report import day_bounds
from .store import Store

CHECKED_KEY = "eosc_checked_until"


class EOSCError(Exception):
    pass


def day_hours(sessions: sessionmaker, day: date) -> dict[tuple[str, str, str], float]:
    """(user, VO, flavor) -> hours used on ``day`` (UTC), sessions clipped to the day."""
    start, end = day_bounds(day, day)
    totals: dict[tuple[str, str, str], float] = {}
    query = select(
        Session.user, Session.primary_vo, Session.flavor, Session.start_time,
        Session.end_time, Session.last_seen,
    ).where(Session.start_time < end, Session.last_seen > start)  # fmt: skip
    with sessions() as db:
        for user, vo, flavor, s_start, s_end, last_seen in db.execute(query):
            stop = s_end if s_end is not None else last_seen
            seconds = min(stop, end) - max(s_start, start)
            if seconds > 0:
                key = (user, vo or "", flavor or "")
                totals[key] = totals.get(key, 0.0) + seconds / 3600
    return totals


class EOSCPusher(LoggingConfigurable):
    accounting_url = Unicode(
        "", config=True, help="EOSC accounting service base URL ('' = no EOSC push)."
    )
    installation_id = Unicode("", config=True, help="EOSC installation id of this service.")
    token_url = Unicode("", config=True, help="OIDC token endpoint for client credentials.")
    client_id = Unicode("", config=True, help="Client id for the client-credentials grant.")
    client_secret = Unicode("", config=True, help="Client secret (never logged).")
    metric_definitions = Dict(
        value_trait=Unicode(),
        config=True,
        help="EOSC metric definition id per flavor; flavors not listed use default_metric.",
    )
    default_metric = Unicode("", config=True, help="Metric definition id for other flavors.")
    first_day = Unicode(
        "", config=True, help="First day (YYYY-MM-DD) to push; default: the first session's day."
    )
    max_days = Integer(31, config=True, help="Days pushed per cycle, at most (catching up).")
    timeout = Float(20, config=True, help="Timeout in seconds of one request.")
    max_retries = Integer(3, config=True, help="Retries of one metric within one cycle.")
    backoff = Float(1.0, config=True, help="First retry delay in seconds (doubles each time).")

    _token: str | None = None
    _token_expiry: float = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.accounting_url)

    def metrics_url(self) -> str:
        base = self.accounting_url.rstrip("/")
        return f"{base}/accounting-system/installations/{self.installation_id}/metrics"

    async def token(self, client: httpx.AsyncClient) -> str:
        if self._token and time.monotonic() < self._token_expiry:
            return self._token
        try:
            response = await client.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.client_secret),
            )
            body = response.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in", 300))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise EOSCError(f"no token from {self.token_url}: {type(e).__name__}") from e
        if response.status_code != 200 or not isinstance(token, str):
            raise EOSCError(f"no token from {self.token_url}: HTTP {response.status_code}")
        self._token, self._token_expiry = token, time.monotonic() + expires_in * 0.8
        return token

    async def send(self, client: httpx.AsyncClient, day: date, key, hours: float) -> str:
        user, vo, flavor = key
        metric = self.metric_definitions.get(flavor, self.default_metric)
        start = datetime.combine(day, datetime.min.time(), UTC)
        body = {
            "metric_definition_id": metric,
            "time_period_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "time_period_end": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": round(hours, 4),
            "group_id": vo,
            "user_id": user,
        }
        token = await self.token(client)
        try:
            response = await client.post(
                self.metrics_url(), json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as e:
            raise EOSCError(f"EOSC unreachable: {type(e).__name__}") from e
        if response.status_code == 401:
            self._token = None  # expired early: a new one next attempt
        if response.status_code not in (200, 201):
            raise EOSCError(f"EOSC answered HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError) as e:
            raise EOSCError(f"garbage answer from EOSC: {response.text[:200]!r}") from e

    def days_to_push(self, sessions: sessionmaker, store: Store) -> list[date]:
        last_poll = store.last_complete_poll()
        if last_poll is None:
            return []
        # the last day that ended before the last complete poll
        last_day = datetime.fromtimestamp(last_poll, UTC).date() - timedelta(days=1)
        checked = store.get_state(CHECKED_KEY)
        if checked:
            first = date.fromisoformat(checked) + timedelta(days=1)
        elif self.first_day:
            first = date.fromisoformat(self.first_day)
        else:
            with sessions() as db:
                earliest = db.scalar(select(Session.start_time).order_by(Session.start_time))
            if earliest is None:
                return []
            first = datetime.fromtimestamp(earliest, UTC).date()
        days: list[date] = []
        while first <= last_day and len(days) < self.max_days:
            days.append(first)
            first += timedelta(days=1)
        return days

    @staticmethod
    def pushed(sessions: sessionmaker, day: date) -> set[tuple[str, str, str]]:
        with sessions() as db:
            rows = db.execute(
                select(EOSCPush.user, EOSCPush.vo, EOSCPush.flavor).where(
                    EOSCPush.day == day.isoformat()
                )
            )
            return {tuple(r) for r in rows}

    @staticmethod
    def remember(sessions: sessionmaker, day: date, key, hours: float, remote_id: str) -> None:
        user, vo, flavor = key
        try:
            with sessions.begin() as db:
                db.add(
                    EOSCPush(
                        day=day.isoformat(),
                        user=user,
                        vo=vo,
                        flavor=flavor,
                        hours=hours,
                        pushed_at=int(time.time()),
                        remote_id=remote_id,
                    )  # fmt: skip
                )
        except IntegrityError:  # another instance remembered it first
            pass

    async def push(self, sessions: sessionmaker, store: Store) -> int:
        """Push every finished day not pushed yet; the number of metrics pushed."""
        if not (self.installation_id and self.token_url):
            raise EOSCError("EOSCPusher.installation_id and token_url must be set")
        days = await asyncio.to_thread(self.days_to_push, sessions, store)
        pushed = 0
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for day in days:
                totals = await asyncio.to_thread(day_hours, sessions, day)
                done = await asyncio.to_thread(self.pushed, sessions, day)
                complete = True
                for key, hours in sorted(totals.items()):
                    if key in done:
                        continue
                    remote_id = await self._send_with_retries(client, day, key, hours)
                    if remote_id is None:
                        complete = False
                        continue
                    await asyncio.to_thread(self.remember, sessions, day, key, hours, remote_id)
                    pushed += 1
                if not complete:
                    break  # days are pushed in order; retried next cycle
                await asyncio.to_thread(store.set_state, CHECKED_KEY, day.isoformat())
        if pushed:
            self.log.info("EOSC: %d metrics pushed", pushed)
        return pushed

    async def _send_with_retries(self, client, day, key, hours) -> str | None:
        try:
            return await retry(
                lambda: self.send(client, day, key, hours),
                attempts=self.max_retries + 1,
                backoff=self.backoff,
                retry_on=EOSCError,
                on_failure=lambda n, e: self.log.warning(
                    "EOSC: %s %s attempt %d: %s", day, key, n, e
                ),
            )
        except EOSCError:
            return None
