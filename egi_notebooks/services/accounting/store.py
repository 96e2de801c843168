"""Transactional writes of the collector's observations (synchronous: run in a thread).

Each poll is applied in ONE transaction: a crash in the middle leaves the database as it was
before the poll, and the next poll redoes the work. Sessions are keyed by their deterministic
VMUUID, so applying the same observation twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from .models import Session, State

# a fixed namespace: the same (hub, user, server, start) always gives the same VMUUID
VMUUID_NAMESPACE = uuid.UUID("9a6d3f0e-4c1b-5a7e-8f2d-6b0c1e9d7a53")

LAST_POLL_KEY = "last_complete_poll"


def make_vmuuid(hub_id: str, user: str, server_name: str, start_time: int) -> str:
    return str(uuid.uuid5(VMUUID_NAMESPACE, f"{hub_id}\x00{user}\x00{server_name}\x00{start_time}"))


@dataclass
class Observation:
    """One running server as seen in one poll of the hub."""

    vmuuid: str
    user: str
    server_name: str
    start_time: int
    primary_vo: str | None = None
    flavor: str | None = None
    image: str | None = None
    cpu_request: float | None = None
    memory_request: int | None = None
    disk_request: int | None = None
    namespace: str | None = None
    pod_name: str | None = None


# fields that, when they become known later, change the APEL record
_FILLABLE = (
    "primary_vo",
    "flavor",
    "image",
    "cpu_request",
    "memory_request",
    "disk_request",
    "namespace",
    "pod_name",
)


@dataclass
class PollOutcome:
    started: int = 0
    ended: int = 0
    updated: int = 0
    seen: int = 0


class Store:
    """The collector's view of the database."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def known_vos(self) -> dict[str, str]:
        """VMUUID -> primary VO of the open sessions whose VO is already known."""
        with self.sessions() as db:
            rows = db.execute(
                select(Session.vmuuid, Session.primary_vo).where(
                    Session.end_time.is_(None), Session.primary_vo.is_not(None)
                )
            )
            return {vmuuid: vo for vmuuid, vo in rows}

    def apply_poll(self, observations: Iterable[Observation], now: int) -> PollOutcome:
        """Record one COMPLETE poll: new sessions start, seen ones are extended, sessions
        open in the database but no longer running end at the time they were last seen."""
        outcome = PollOutcome()
        observed = {o.vmuuid: o for o in observations}
        outcome.seen = len(observed)
        with self.sessions.begin() as db:
            open_rows = {
                row.vmuuid: row
                for row in db.scalars(select(Session).where(Session.end_time.is_(None)))
            }
            missing = [v for v in observed if v not in open_rows]
            # sessions seen before but closed (e.g. a partial answer of the hub): reopen them
            # instead of counting them twice
            closed_rows = {}
            for chunk_start in range(0, len(missing), 500):
                chunk = missing[chunk_start : chunk_start + 500]
                for row in db.scalars(select(Session).where(Session.vmuuid.in_(chunk))):
                    closed_rows[row.vmuuid] = row
            for vmuuid, obs in observed.items():
                row = open_rows.get(vmuuid) or closed_rows.get(vmuuid)
                if row is None:
                    row = Session(
                        **{k: getattr(obs, k) for k in ("vmuuid", "user", "server_name")},
                        start_time=obs.start_time,
                        last_seen=max(now, obs.start_time),
                        version=1,
                        sent_version=0,
                        **{k: getattr(obs, k) for k in _FILLABLE},
                    )
                    db.add(row)
                    outcome.started += 1
                    continue
                changed = False
                if row.end_time is not None:
                    row.end_time = None
                    changed = True
                for key in _FILLABLE:
                    value = getattr(obs, key)
                    if value is not None and getattr(row, key) is None:
                        setattr(row, key, value)
                        changed = True
                row.last_seen = max(row.last_seen, now)
                if changed:
                    row.version += 1
                    outcome.updated += 1
            for vmuuid, row in open_rows.items():
                if vmuuid not in observed:
                    # gone between the last poll and this one: it ended at the last time we
                    # saw it running (error at most one poll interval)
                    row.end_time = row.last_seen
                    row.version += 1
                    outcome.ended += 1
            self._set_state(db, LAST_POLL_KEY, str(now))
        return outcome

    @staticmethod
    def _set_state(db, key: str, value: str) -> None:
        row = db.get(State, key)
        if row is None:
            db.add(State(key=key, value=value))
        else:
            row.value = value

    def set_state(self, key: str, value: str) -> None:
        with self.sessions.begin() as db:
            self._set_state(db, key, value)

    def get_state(self, key: str) -> str | None:
        with self.sessions() as db:
            row = db.get(State, key)
            return row.value if row else None

    def last_complete_poll(self) -> int | None:
        value = self.get_state(LAST_POLL_KEY)
        return int(value) if value else None
