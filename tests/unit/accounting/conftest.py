"""Fixtures of the accounting tests: every database test runs on SQLite AND real PostgreSQL;
the AMS senders' tests share a local AMS and a host certificate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from egi_notebooks.services.accounting import db
from tests.harness.ams import AMSEmulator
from tests.harness.pki import HostPKI, make_host_pki, require_openssl
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


@pytest.fixture
def ams() -> Iterator[AMSEmulator]:
    """A local AMS for one test (its plan and what it stored are the test's own)."""
    with AMSEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> HostPKI:
    """A test CA and a host certificate it signed, as APEL senders have (needs openssl)."""
    require_openssl()
    return make_host_pki(tmp_path_factory.mktemp("pki"))
