"""Sessions recorded from polls: started, extended, ended at last sight, never twice."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from egi_notebooks.services.accounting import db
from egi_notebooks.services.accounting.models import Session
from egi_notebooks.services.accounting.store import Observation, Store, make_vmuuid

T0 = 1_780_000_000


def obs(user="alice", server="", start=T0, vo="vo.example.org", **kw) -> Observation:
    return Observation(
        vmuuid=make_vmuuid("hub", user, server, start),
        user=user,
        server_name=server,
        start_time=start,
        primary_vo=vo,
        **kw,
    )


def rows(sessions) -> list[Session]:
    with sessions() as s:
        return list(s.scalars(select(Session).order_by(Session.id)))


def test_session_lifecycle(sessions):
    store = Store(sessions)
    store.apply_poll([obs(), obs("bob", "gpu", T0 + 5)], T0 + 60)
    store.apply_poll([obs(), obs("bob", "gpu", T0 + 5)], T0 + 120)
    store.apply_poll([obs("bob", "gpu", T0 + 5)], T0 + 180)  # alice gone
    alice, bob = rows(sessions)
    assert (alice.user, alice.end_time, alice.status) == ("alice", T0 + 120, "completed")
    assert (bob.end_time, bob.last_seen, bob.status) == (None, T0 + 180, "started")
    assert alice.version == 2  # the end changed the record: it must be sent again
    assert store.last_complete_poll() == T0 + 180


def test_same_poll_twice_and_restart_count_once(sessions):
    store = Store(sessions)
    store.apply_poll([obs()], T0 + 60)
    store.apply_poll([obs()], T0 + 60)
    # a new Store on the same database = the service restarted
    Store(sessions).apply_poll([obs()], T0 + 600)
    Store(sessions).apply_poll([], T0 + 660)
    (only,) = rows(sessions)
    assert (only.start_time, only.end_time) == (T0, T0 + 600)


def test_session_back_after_partial_answer_is_reopened_not_duplicated(sessions):
    store = Store(sessions)
    store.apply_poll([obs()], T0 + 60)
    store.apply_poll([], T0 + 120)
    store.apply_poll([obs()], T0 + 180)
    (only,) = rows(sessions)
    assert only.end_time is None and only.last_seen == T0 + 180


def test_restarted_server_is_a_new_session(sessions):
    store = Store(sessions)
    store.apply_poll([obs()], T0 + 60)
    store.apply_poll([obs(start=T0 + 100)], T0 + 120)
    first, second = rows(sessions)
    assert first.end_time == T0 + 60 and second.start_time == T0 + 100


def test_vo_learnt_later_bumps_the_version(sessions):
    store = Store(sessions)
    store.apply_poll([obs(vo=None)], T0 + 60)
    assert store.known_vos() == {}
    store.apply_poll([obs(vo="vo.b")], T0 + 120)
    (only,) = rows(sessions)
    assert only.primary_vo == "vo.b" and only.version == 2
    assert store.known_vos() == {only.vmuuid: "vo.b"}


def test_failed_poll_changes_nothing(sessions):
    store = Store(sessions)
    store.apply_poll([obs()], T0 + 60)
    broken = obs("bob")
    broken.user = None  # NOT NULL violated in the middle of the transaction
    with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError class varies
        store.apply_poll([broken], T0 + 120)
    (only,) = rows(sessions)
    assert only.end_time is None and only.last_seen == T0 + 60
    assert store.last_complete_poll() == T0 + 60


def test_upgrade_from_first_revision_keeps_data(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0001")
    assert db.current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO sessions (vmuuid, "user", server_name, start_time, last_seen,'
                " version, sent_version) VALUES ('u1', 'alice', '', :t, :t, 1, 0)"
            ),
            {"t": T0},
        )
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision() == "0002"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Session.__table__)).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM eosc_pushes")).scalar() == 0
    engine.dispose()
