"""A restore never writes outside the user's claim, whatever the user's own processes (the same
uid as the restore, with only their claim mounted) do to their home meanwhile: symbolic links
planted at the restored folder, at its parents, at the paths an in-place restore overwrites.

mallory is the attacker, bob the victim: mallory's snapshot holds an IPython startup file, and a
restore that followed one of her links would drop it into bob's home (see planting.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from egi_notebooks.backup.placing import PlacingError, inspect, open_dir, place
from egi_notebooks.backup.restic import Restic
from egi_notebooks.backup.restore import RestoreError, Snapshot, restore

from .conftest import PASSWORD, make_home, manifest
from .planting import EVIL

PLANTING = Path(__file__).with_name("planting.py")

WRAPPER = """#!/bin/sh
exec "{python}" "{planting}" exec "{home}" "{bob}" "{day}" "{restic}" "$@"
"""


def homes(setup) -> tuple[Path, Path]:
    mallory, bob = setup.homes / "claim-mallory", setup.homes / "claim-bob"
    for home, seed in ((mallory, "mallory"), (bob, "bob")):
        make_home(home, seed, large=64 * 1024)
        (home / ".ipython/profile_default/startup").mkdir(parents=True)
        (home / ".ipython/profile_default/startup/README").write_text(f"{seed}'s\n")
    (mallory / EVIL).write_text("import os  # mallory's code, run in every kernel\n")
    return mallory, bob


def backed_up(setup) -> dict:
    result = setup.run(keep_last="5")
    assert result.returncode == 0, result.stderr
    (snapshot,) = json.loads(setup.plain("snapshots", "--json", "--tag", "user=mallory"))
    return snapshot


BESIDE = ".egi-notebooks-restore"


def outside(setup, mallory: Path) -> dict[str, dict[str, tuple]]:
    """Everything under the mount root but mallory's claim (and the staging directory)."""
    return {
        name: manifest(setup.homes / name, skip=())
        for name in sorted(os.listdir(setup.homes))
        if name not in (mallory.name, BESIDE)
    }


@pytest.fixture
def stagings(setup):
    """Two staging directories: on the home export beside the claims (files moved by renaming)
    and on another filesystem (files copied), /dev/shm when it is one. Both are left empty."""
    shm = Path("/dev/shm")
    other = shm if shm.is_dir() and shm.stat().st_dev != setup.homes.stat().st_dev else None
    elsewhere = Path(tempfile.mkdtemp(prefix="restore-staging-", dir=other or setup.root))
    beside = setup.homes / BESIDE
    yield [beside, elsewhere]
    left = [*elsewhere.iterdir(), *(beside.iterdir() if beside.exists() else [])]
    shutil.rmtree(elsewhere)
    assert left == [], "a staging directory was left behind"


@pytest.mark.parametrize("across", [False, True], ids=["renamed", "copied"])
@pytest.mark.parametrize("in_place", [False, True], ids=["new-folder", "in-place"])
def test_links_planted_when_restic_starts_are_not_followed(setup, stagings, in_place, across):
    mallory, bob = homes(setup)
    snapshot = backed_up(setup)
    staging = stagings[across]
    at_backup = manifest(mallory)
    before = outside(setup, mallory)
    wrapper = setup.root / "restic-planting-links"
    day = snapshot["time"][:10]
    wrapper.write_text(WRAPPER.format(python=sys.executable, planting=PLANTING, home=mallory,
                                      bob=bob, day=day, restic=setup.restic))  # fmt: skip
    wrapper.chmod(0o755)

    args = ["restore", "mallory"] + (["--in-place", "--yes"] if in_place else [])
    result = setup.run(*args, restic=str(wrapper), restore_staging_dir=str(staging))

    assert not (bob / EVIL).exists(), "mallory's startup file landed in bob's home"
    assert outside(setup, mallory) == before  # bob's home byte for byte, nothing new
    assert PASSWORD not in result.stdout + result.stderr
    # the restore did its job inside mallory's claim, whatever her links
    assert result.returncode == 0, result.stderr
    where = Path(result.stdout.strip().splitlines()[-1])
    if in_place:
        assert where == mallory
        assert not (mallory / ".ipython").is_symlink() and (mallory / EVIL).is_file()
        assert {k: v for k, v in manifest(mallory).items() if k in at_backup} == at_backup
    else:
        assert where.parent == mallory and not where.is_symlink() and where.is_dir()
        assert manifest(where) == at_backup


@pytest.mark.parametrize("in_place", [False, True], ids=["new-folder", "in-place"])
def test_20_restores_while_mallory_keeps_planting_links(setup, stagings, in_place):
    mallory, bob = homes(setup)
    snapshot = Snapshot.from_restic(backed_up(setup))
    before = outside(setup, mallory)
    restic = Restic(repository=str(setup.repo), password_file=str(setup.password_file),
                    binary=setup.restic)  # fmt: skip
    adversary = subprocess.Popen(
        [sys.executable, str(PLANTING), "loop", str(mallory), str(bob)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    outcomes: list[str] = []
    try:
        assert adversary.stdout is not None and adversary.stdout.readline() == "ready\n"
        for n in range(20):
            staging = stagings[n % 2]
            try:
                where = asyncio.run(
                    restore(restic, snapshot, str(mallory), in_place=in_place,
                            root=str(setup.homes), staging_dir=str(staging))
                )  # fmt: skip
            except RestoreError as e:
                outcomes.append(f"refused: {e}")
                continue
            outcomes.append(f"restored into {where}")
    finally:
        adversary.terminate()
        out, _ = adversary.communicate(timeout=60)
    planted = int(out.split()[-1])
    assert planted > 0, "the adversary planted no link"

    assert not (bob / EVIL).exists(), "mallory's startup file landed in bob's home"
    assert outside(setup, mallory) == before, "something was written outside mallory's claim"
    for outcome in outcomes:  # inside mallory's claim, or a clear refusal naming where it stopped
        if in_place:
            assert outcome == f"restored into {mallory}" or (
                outcome.startswith("refused: ") and "during the restore" in outcome
            ), outcome
        else:
            assert outcome.startswith(f"restored into {mallory}/restored-") or (
                outcome.startswith("refused: ") and "during the restore" in outcome
            ), outcome
    done = sum(o.startswith("restored") for o in outcomes)
    print(f"{planted} links planted; {done} of 20 restores went through")
    print("\n".join(sorted({o for o in outcomes if o.startswith("refused")})))


def a_snapshot(claim: str = "claim-mallory") -> Snapshot:
    return Snapshot.from_restic({"id": "0" * 64, "time": "2026-12-01T10:00:00Z",
                                 "tags": ["user=mallory", f"claim={claim}"]})  # fmt: skip


def test_a_claim_that_is_a_link_and_a_staging_in_reach_are_refused(tmp_path):
    root, never = tmp_path / "homes", Restic(binary="/no/restic/needed")
    (root / "claim-bob").mkdir(parents=True)
    (root / "claim-mallory").symlink_to(root / "claim-bob")
    with pytest.raises(RestoreError, match="without following links"):
        asyncio.run(restore(never, a_snapshot(), str(root / "claim-mallory"), root=str(root)))
    (root / "claim-mallory").unlink()
    (root / "claim-mallory").mkdir()
    for staging in (root / "claim-mallory/.cache", root / "claim-bob", root, tmp_path / "x"):
        inside = staging != tmp_path / "x"
        with pytest.raises(RestoreError, match="staging directory" if inside else "cannot run"):
            asyncio.run(restore(never, a_snapshot(), str(root / "claim-mallory"), in_place=True,
                                root=str(root), staging_dir=str(staging)))  # fmt: skip
    assert sorted(os.listdir(root)) == ["claim-bob", "claim-mallory"]
    assert os.listdir(root / "claim-bob") == os.listdir(root / "claim-mallory") == []


def test_what_restic_wrote_is_checked(tmp_path):
    staged = tmp_path / "staged"
    (staged / "d").mkdir(parents=True)
    (staged / "d" / "a").write_text("a\n")
    (staged / "d" / "a").chmod(0o644)  # whatever the umask: the mode is what is compared
    os.link(staged / "d" / "a", staged / "b")  # two names, both restored: kept
    os.mkfifo(staged / "d" / "fifo")
    (staged / "d").chmod(0o555)  # a read-only folder of the snapshot
    fd = open_dir(str(staged))
    try:
        assert inspect(fd) == ["d/fifo"]
        os.link(staged / "b", tmp_path / "outside")  # a third name, out of the tree
        with pytest.raises(PlacingError, match="outside the restored tree"):
            inspect(fd)
        os.unlink(tmp_path / "outside")
        (tmp_path / "home").mkdir()
        home = open_dir(str(tmp_path / "home"))
        try:
            place(fd, home, inspect(fd))
        finally:
            os.close(home)
    finally:
        os.close(fd)
    assert manifest(tmp_path / "home") == {
        "b": ("file", hashlib.sha256(b"a\n").hexdigest(), 0o644),
        "d": ("dir", 0o555),
        "d/a": ("file", hashlib.sha256(b"a\n").hexdigest(), 0o644),
    }
