"""Opening the accounting database and bringing its schema up to date with alembic."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 in SQLAlchemy 2.1; keep psycopg2 (our dependency)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        # DB work runs in worker threads (asyncio.to_thread): allow the pool to cross threads
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            # WAL: the web view reads while the collector writes; synchronous=NORMAL is still
            # crash-safe for committed transactions in WAL mode
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the accounting package ships no database migrations")
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` in one transaction (keeps existing data)."""
    cfg = alembic_config()
    before = current_revision(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    after = current_revision(engine)
    if before != after:
        log.info("accounting database schema upgraded from %s to %s", before, after)


def open_database(url: str) -> tuple[Engine, sessionmaker]:
    engine = make_engine(url)
    upgrade(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)
