"""Faults: a volume that vanishes mid-run, a locked or unreachable repository. Each volume's
backup is isolated, the run ends with a summary and a non-zero exit; no credential reaches a
log, a command line or the status file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.harness.missing import missing

from .conftest import PASSWORD, make_home

WRAPPER = """#!/bin/sh
# records each restic call (arguments and the names of RESTIC_ variables), then runs restic;
# the backup of claim-bob removes the volume first, as a claim deleted during a run
printf '%s\\n' "$*" >> "{calls}"
env | grep '^RESTIC_' | cut -d= -f1 | tr '\\n' ' ' >> "{calls}"; echo >> "{calls}"
if [ "$1" = backup ] && [ "$(basename "$PWD")" = claim-bob ]; then rm -rf "$PWD"; fi
exec "{restic}" "$@"
"""


def wrapper(setup) -> tuple[str, str]:
    calls = setup.root / "restic-calls.log"
    script = setup.root / "restic-wrapper"
    script.write_text(WRAPPER.format(calls=calls, restic=setup.restic))
    script.chmod(0o755)
    return str(script), str(calls)


def test_a_volume_vanishing_mid_run_does_not_stop_the_others(setup):
    for user in ("alice", "bob", "carol"):
        make_home(setup.homes / f"claim-{user}", user, large=1024)
    script, calls = wrapper(setup)
    result = setup.run(restic=script)
    assert result.returncode == 1, result.stderr
    status = json.loads(setup.status_file.read_text())
    assert status["last_run"]["ok"] == 2 and status["last_run"]["failed"] == 1
    volumes = status["volumes"]
    assert volumes["claim-alice"]["last_success"] and volumes["claim-carol"]["last_success"]
    assert volumes["claim-bob"]["last_success"] is None
    assert volumes["claim-bob"]["last_error"] == "volume vanished during its backup"
    assert volumes["claim-bob"]["last_error_kind"] == "source"
    # the summary names the run's outcome and the failed volume
    assert "2 of 3 volumes backed up, 1 failed" in result.stderr
    assert "FAILED claim claim-bob (user 'bob')" in result.stderr
    # the password went to restic as a file, never as an argument or a value in a variable
    recorded = open(calls).read()
    assert PASSWORD not in recorded
    assert "RESTIC_PASSWORD_FILE" in recorded and "RESTIC_PASSWORD " not in recorded
    for text in (result.stdout, result.stderr, setup.status_file.read_text()):
        assert PASSWORD not in text

    # the next run backs up what is there; the vanished claim keeps its record
    again = setup.run()
    assert again.returncode == 0, again.stderr
    assert "claim-bob" in json.loads(setup.status_file.read_text())["volumes"]


def hold_exclusive_lock(setup) -> subprocess.Popen:
    """A restic prune stopped while it holds the repository's exclusive lock."""
    locks = setup.repo / "locks"

    def held() -> bool:  # the local backend writes a lock as <id>-tmp-<n>, then renames it
        return any("-tmp-" not in p.name for p in locks.iterdir())

    for _ in range(20):
        check = subprocess.Popen([setup.restic, "prune"], env=setup.restic_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        while check.poll() is None and not held():
            time.sleep(0.001)
        if check.poll() is None:
            check.send_signal(signal.SIGSTOP)
            if check.poll() is None and held():
                return check
        check.wait()
    raise AssertionError("could not catch restic prune holding its lock")


def test_a_locked_repository_fails_every_volume_with_a_clear_summary(setup):
    for user in ("alice", "bob"):
        make_home(setup.homes / f"claim-{user}", user, large=8 * 1024 * 1024)
    assert setup.run().returncode == 0
    check = hold_exclusive_lock(setup)
    try:
        locked = setup.run(lock_attempts="2")
    finally:
        check.send_signal(signal.SIGCONT)
        check.wait(timeout=600)
    assert locked.returncode == 1
    status = json.loads(setup.status_file.read_text())
    assert status["last_run"]["failed"] == 2
    assert {v["last_error_kind"] for v in status["volumes"].values()} == {"locked"}
    assert "0 of 2 volumes backed up, 2 failed" in locked.stderr
    assert "attempt 1 failed" in locked.stderr  # retried before giving up
    # once the lock is gone, the next run succeeds
    assert setup.run().returncode == 0


def test_an_unreachable_repository_logs_no_credential(setup):
    make_home(setup.homes / "claim-alice", "alice", large=1024)
    secret = "s3cr3t-rest-password-91"
    url = f"rest:http://backup:{secret}@127.0.0.1:9/repo"
    result = setup.run(repository=url, lock_attempts="1")
    assert result.returncode == 1
    status_text = setup.status_file.read_text()
    status = json.loads(status_text)
    assert status["volumes"]["claim-alice"]["last_error_kind"] == "unreachable"
    assert "backup:***@127.0.0.1:9" in result.stderr
    for text in (result.stdout, result.stderr, status_text):
        assert secret not in text and PASSWORD not in text

    # the same URL in a file (RESTIC_REPOSITORY_FILE), the password in the environment
    url_file = setup.root / "repository-url"
    url_file.write_text(url + "\n")
    env_password = "env-password-77aa"
    from_env = setup.run(
        repository="", repository_file=str(url_file), password_file="",
        env={"RESTIC_PASSWORD": env_password},
    )  # fmt: skip
    assert from_env.returncode == 1
    for text in (from_env.stdout, from_env.stderr, setup.status_file.read_text()):
        assert secret not in text and env_password not in text
    assert os.path.exists(setup.status_file)


def test_a_full_repository_fails_the_volume_that_does_not_fit(setup):
    if os.geteuid() != 0:
        missing("a full repository needs a small tmpfs, which only root can mount")
    setup.repo.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(setup.repo)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        missing(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        make_home(setup.homes / "claim-alice", "alice", large=1024)
        make_home(setup.homes / "claim-bob", "bob", large=1024)
        (setup.homes / "claim-bob" / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
        make_home(setup.homes / "claim-carol", "carol", large=1024)
        result = setup.run(lock_attempts="1")
        status = json.loads(setup.status_file.read_text())
    finally:
        subprocess.run(["umount", "-l", str(setup.repo)], check=False)
    assert result.returncode == 1
    volumes = status["volumes"]
    assert volumes["claim-bob"]["last_error_kind"] == "full", volumes["claim-bob"]
    assert volumes["claim-alice"]["last_success"]
    assert "FAILED claim claim-bob (user 'bob'): full" in result.stderr


def test_as_a_service_a_failed_run_does_not_stop_the_schedule(setup):
    make_home(setup.homes / "claim-alice", "alice", large=1024)
    command = [sys.executable, "-m", "egi_notebooks.cli", "backup",
               *setup.options(repository="rest:http://127.0.0.1:9/none", interval="1",
                              first_run_delay="0", lock_attempts="1")]  # fmt: skip
    service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=setup.root)  # fmt: skip
    seen: set[float] = set()
    try:
        deadline = time.monotonic() + 300
        while len(seen) < 2 and time.monotonic() < deadline and service.poll() is None:
            if setup.status_file.exists():
                seen.add(json.loads(setup.status_file.read_text())["last_run"]["finished"])
            time.sleep(0.2)
        assert service.poll() is None, "the service exited after a failed run"
    finally:
        service.terminate()
        service.wait(timeout=60)
    assert len(seen) >= 2
