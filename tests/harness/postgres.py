"""A real PostgreSQL server (Debian package) in a temporary directory, on a free port.

PostgreSQL refuses to run as root: as root every server command runs as the
``postgres`` user through ``runuser``, and the data and socket directories belong to it.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .hub import free_port


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None if the package is missing."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="egi-pg-"))
        self.data = self.tmp / "data"
        self.sockets = self.tmp / "sockets"
        self.as_root = os.geteuid() == 0
        self._names = itertools.count(1)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    def start(self) -> PostgresServer:
        self.sockets.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.tmp, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        # fsync off: a test server, never a durable one
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.tmp / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg2

        name = name or f"test_{next(self._names)}"
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        for _ in range(20):
            try:
                shutil.rmtree(self.tmp)
                return
            except OSError:
                time.sleep(0.1)


def postgres_or_skip():
    """Start a server, or skip the test with the reason printed (package missing)."""
    from tests.harness.missing import missing

    if find_bindir() is None:
        missing("PostgreSQL is needed: Debian package postgresql is not installed")
    return PostgresServer().start()
