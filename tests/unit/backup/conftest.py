"""Backups with the real restic (Debian's package), a local repository in tmp_path."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.missing import missing

PASSWORD = "pw-8f3c2a71-correct-horse-battery"


@pytest.fixture(scope="session")
def restic_bin() -> str:
    found = shutil.which("restic")
    if not found:
        missing("restic is not installed (Debian package restic; ./run installs it)")
    return found


@dataclass
class Setup:
    root: Path
    homes: Path
    repo: Path
    password_file: Path
    status_file: Path
    restic: str

    def options(self, **extra: str) -> list[str]:
        options = {
            "repository": str(self.repo),
            "password_file": str(self.password_file),
            "mount_root": str(self.homes),
            "status_file": str(self.status_file),
            "restic": self.restic,
            "lock_backoff": "0.2",
            **extra,
        }
        return [f"--BackupApp.{k}={v}" for k, v in options.items()]

    def run(self, *args: str, env: dict[str, str] | None = None, stdin: str = "", **extra: str):
        """``egi-notebooks backup ARGS`` as a process, as a CronJob runs it."""
        command = [
            sys.executable,
            "-m",
            "egi_notebooks.cli",
            "backup",
            *args,
            *self.options(**extra),
        ]
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "JUPYTERHUB_"))
        }
        environment.update(env or {})
        return subprocess.run(
            command, capture_output=True, text=True, timeout=600, env=environment,
            input=stdin, cwd=self.root,
        )  # fmt: skip

    def restic_env(self) -> dict[str, str]:
        return {**os.environ, "RESTIC_REPOSITORY": str(self.repo),
                "RESTIC_PASSWORD_FILE": str(self.password_file)}  # fmt: skip

    def plain(self, *args: str, cwd: Path | None = None) -> str:
        """restic itself, for what the tests look at (and snapshots with a chosen time)."""
        result = subprocess.run([self.restic, *args], capture_output=True, text=True,
                                env=self.restic_env(), cwd=cwd, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture
def setup(tmp_path: Path, restic_bin: str) -> Setup:
    homes = tmp_path / "homes"
    homes.mkdir()
    password_file = tmp_path / "restic-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    return Setup(tmp_path, homes, tmp_path / "repo", password_file, tmp_path / "status.json",
                 restic_bin)  # fmt: skip


def make_home(home: Path, seed: str, large: int = 3 * 1024 * 1024) -> None:
    """A home with unicode names, symlinks (relative, absolute, dangling), a large file, an
    empty file and an empty directory."""
    (home / "données" / "数据").mkdir(parents=True)
    (home / "empty-dir").mkdir()
    (home / "notebook ✓.ipynb").write_text(f'{{"cells": [], "seed": "{seed}"}}\n')
    (home / "données" / "résumé.txt").write_text(f"ünïcödé {seed}\n")
    (home / "données" / "数据" / "表.csv").write_text("a,b\n1,2\n")
    (home / "empty.txt").write_bytes(b"")
    (home / "large.bin").write_bytes(hashlib.sha256(seed.encode()).digest() * (large // 32))
    (home / "link-relative").symlink_to("données/résumé.txt")
    (home / "link-absolute").symlink_to("/etc/hostname")
    (home / "link-dangling").symlink_to("no/such/file")
    (home / ".hidden").write_text("dotfile\n")


def manifest(root: Path, skip: tuple[str, ...] = ("restored-",)) -> dict[str, tuple]:
    """Every entry under ``root``: (type, sha256 or link target, mode)."""
    entries: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        if base == root:
            dirnames[:] = [d for d in dirnames if not d.startswith(skip)]
        for name in dirnames + filenames:
            path = base / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                entries[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[rel] = ("dir", st.st_mode & 0o7777)
            else:
                entries[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(),
                                st.st_mode & 0o7777)  # fmt: skip
    return entries
