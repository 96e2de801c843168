"""Database tables of the accounting service (SQLAlchemy 2, SQLite or PostgreSQL).

Times are stored as integer epoch seconds (UTC): the APEL records want epoch seconds, and
integers compare the same way on every database (no time zone surprises across SQLite and
PostgreSQL). Byte counts are stored as given by Kubernetes/Prometheus; units are converted
only when a record is rendered (``apel.py``).

The schema is owned by the alembic migrations in ``migrations/``: change a table here, then
add a revision there (``migrate.py`` runs them at start-up).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Session(Base):
    """One notebook server session: from the server's start until it was last seen running."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # deterministic (uuid5 of hub, user, server, start): seeing the same session again after
    # a restart of the hub or the service finds the same row instead of adding one
    vmuuid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    server_name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    primary_vo: Mapped[str | None] = mapped_column(String(255))
    flavor: Mapped[str | None] = mapped_column(String(255))
    image: Mapped[str | None] = mapped_column(String(1024))
    cpu_request: Mapped[float | None] = mapped_column(Float)
    memory_request: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    disk_request: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    namespace: Mapped[str | None] = mapped_column(String(255))
    pod_name: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_seen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    end_time: Mapped[int | None] = mapped_column(BigInteger)  # NULL while running
    # usage from Prometheus (NULL: not known yet)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    memory_peak: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    network_in: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    network_out: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    usage_time: Mapped[int | None] = mapped_column(BigInteger)  # when usage was last measured
    # every change that alters the APEL record bumps `version`; the record is (re)sent while
    # `sent_version < version` (APEL keeps the latest record per VMUUID)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    sent_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (
        Index("ix_sessions_open", "end_time"),
        Index("ix_sessions_start", "start_time"),
        Index("ix_sessions_unsent", "sent_version", "version"),
    )

    @property
    def status(self) -> str:
        return "started" if self.end_time is None else "completed"

    @property
    def effective_end(self) -> int:
        """End of the session as far as known: its end, or when it was last seen running."""
        return self.end_time if self.end_time is not None else self.last_seen


class EOSCPush(Base):
    """One metric pushed to the EOSC accounting service; its presence forbids a second push."""

    __tablename__ = "eosc_pushes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[str] = mapped_column(String(10), nullable=False)  # YYYY-MM-DD (UTC)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    vo: Mapped[str] = mapped_column(String(255), nullable=False)
    flavor: Mapped[str] = mapped_column(String(255), nullable=False)
    hours: Mapped[float] = mapped_column(Float, nullable=False)
    pushed_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remote_id: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("day", "user", "vo", "flavor", name="uq_eosc_push"),)


class State(Base):
    """Small key/value facts, e.g. the time of the last complete poll of the hub."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024), nullable=False)
