"""Fixtures of the accounting tests: every database test runs on SQLite AND real PostgreSQL."""

from __future__ import annotations

import pytest

from egi_notebooks.services.accounting import db
from tests.harness.postgres import postgres_or_skip


@pytest.fixture(scope="session")
def pg_server():
    server = postgres_or_skip()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'accounting.sqlite'}"
    return request.getfixturevalue("pg_server").create_database()


@pytest.fixture
def engine_and_sessions(database_url):
    engine, sessions = db.open_database(database_url)
    yield engine, sessions
    engine.dispose()


@pytest.fixture
def sessions(engine_and_sessions):
    return engine_and_sessions[1]
