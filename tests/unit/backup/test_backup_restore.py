"""Back up a tree of homes, change it, back up again; restore a chosen snapshot of one user,
byte for byte; restore never overwrites; retention forgets as configured."""

from __future__ import annotations

import json
import os
import shutil

from .conftest import PASSWORD, make_home, manifest


def snapshots(setup, *tags: str) -> list[dict]:
    args = ["snapshots", "--json"] + (["--tag", ",".join(tags)] if tags else [])
    return json.loads(setup.plain(*args))


def backed_up(setup) -> dict:
    # two runs on one day: a daily policy alone would keep only the second snapshot
    result = setup.run(keep_last="5")
    assert result.returncode == 0, result.stderr
    return json.loads(setup.status_file.read_text())


def test_backup_change_and_restore_a_chosen_snapshot(setup):
    alice, bob = setup.homes / "claim-alice", setup.homes / "claim-bob"
    make_home(alice, "alice-1")
    make_home(bob, "bob-1")
    (setup.homes / "not-a-claim").mkdir()  # neither EGISpawner's naming nor a VO claim
    before, bob_before = manifest(alice), manifest(bob)

    first = backed_up(setup)
    assert set(first["volumes"]) == {"claim-alice", "claim-bob"}
    assert first["last_run"] == {**first["last_run"], "ok": 2, "failed": 0}
    (one,) = snapshots(setup, "user=alice")
    assert set(one["tags"]) == {"user=alice", "claim=claim-alice", "kind=home"}

    # change, delete and add files, then back up again
    (alice / "notebook ✓.ipynb").write_text('{"cells": ["changed"]}\n')
    (alice / "données" / "résumé.txt").unlink()
    (alice / "large.bin").write_bytes(os.urandom(1024 * 1024))
    (alice / "new ✨.txt").write_text("new\n")
    after = manifest(alice)
    second = backed_up(setup)
    assert second["volumes"]["claim-alice"]["last_snapshot"] != one["short_id"]

    listed = setup.run("list", "alice", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = json.loads(listed.stdout)
    assert [s["id"] for s in mine][0] == one["id"] and len(mine) == 2
    assert {s["claim"] for s in mine} == {"claim-alice"}  # none of bob's

    # the first snapshot, chosen by id: into a new folder, identical to the first tree
    restored = setup.run("restore", "alice", "--snapshot", one["short_id"])
    assert restored.returncode == 0, restored.stderr
    target = restored.stdout.strip().splitlines()[-1]
    assert target == str(alice / f"restored-{one['time'][:10]}")
    assert manifest(alice / os.path.basename(target)) == before
    assert manifest(alice) == after  # the home itself is untouched
    assert manifest(bob) == bob_before  # and so is the other user's

    # by date: the last snapshot of that day is the second one, in the next new folder
    again = setup.run("restore", "alice", "--date", one["time"][:10])
    assert again.returncode == 0, again.stderr
    second_target = again.stdout.strip().splitlines()[-1]
    assert second_target == target + "-2"
    assert manifest(alice / os.path.basename(second_target)) == after

    # another user's snapshot id is refused for alice
    bobs = snapshots(setup, "user=bob")[0]
    refused = setup.run("restore", "alice", "--snapshot", bobs["short_id"])
    assert refused.returncode == 1
    assert "not one of this user's" in refused.stderr


def test_restore_never_overwrites(setup):
    alice = setup.homes / "claim-alice"
    make_home(alice, "alice-1")
    at_backup = manifest(alice)
    backed_up(setup)
    (snapshot,) = snapshots(setup, "user=alice")
    day = snapshot["time"][:10]

    # a folder of that name exists already: a new one is made, the old one is untouched
    taken = alice / f"restored-{day}"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me\n")
    result = setup.run("restore", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"restored-{day}-2")
    assert (taken / "mine.txt").read_text() == "keep me\n"
    assert sorted(os.listdir(taken)) == ["mine.txt"]

    # a target that is not empty is refused
    target = setup.root / "new-claim"
    target.mkdir()
    (target / "there.txt").write_text("x\n")
    refused = setup.run("restore", "alice", "--target", str(target))
    assert refused.returncode == 1 and "not empty" in refused.stderr
    assert os.listdir(target) == ["there.txt"]
    # an empty one (a new claim) is fine
    shutil.rmtree(target)
    ok = setup.run("restore", "alice", "--target", str(target))
    assert ok.returncode == 0, ok.stderr
    assert manifest(target) == manifest(alice)

    # in place needs a confirmation: without a terminal and without --yes, nothing happens
    (alice / "notebook ✓.ipynb").write_text("changed since\n")
    unconfirmed = setup.run("restore", "alice", "--in-place")
    assert unconfirmed.returncode == 2
    assert (alice / "notebook ✓.ipynb").read_text() == "changed since\n"
    confirmed = setup.run("restore", "alice", "--in-place", "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert '"seed": "alice-1"' in (alice / "notebook ✓.ipynb").read_text()
    assert manifest(alice) == at_backup  # every file as backed up, no staging left behind

    for output in (result, refused, ok, unconfirmed, confirmed):
        assert PASSWORD not in output.stdout + output.stderr


def test_retention_forgets_per_volume_as_configured(setup):
    alice, bob = setup.homes / "claim-alice", setup.homes / "claim-bob"
    make_home(alice, "a", large=1024)
    make_home(bob, "b", large=1024)
    setup.plain("init")
    # older snapshots of both volumes, tagged as the backup tags them, one per day
    days = ["2026-06-01", "2026-06-02", "2026-06-03", "2026-06-10", "2026-06-11"]
    for claim, user in (("claim-alice", "alice"), ("claim-bob", "bob")):
        for day in days:
            setup.plain("backup", "--host", f"egi-notebooks/{claim}", "--time", f"{day} 12:00:00",
                        "--tag", f"claim={claim}", "--tag", "kind=home", "--tag", f"user={user}",
                        ".", cwd=setup.homes / claim)  # fmt: skip
    # a volume whose claim is gone: with no gone_claim_retention_days, kept for ever
    setup.plain("backup", "--host", "egi-notebooks/claim-gone", "--time", "2026-05-01 12:00:00",
                "--tag", "claim=claim-gone", "--tag", "kind=home", "--tag", "user=gone",
                ".", cwd=alice)  # fmt: skip
    # snapshots that are not this service's (no kind tag) are never forgotten
    for day in days:
        setup.plain("backup", "--host", "elsewhere", "--time", f"{day} 08:00:00", ".",
                    cwd=alice)  # fmt: skip

    result = setup.run(keep_daily="3", keep_weekly="0", keep_monthly="0")
    assert result.returncode == 0, result.stderr
    for user in ("alice", "bob"):
        kept = sorted(s["time"][:10] for s in snapshots(setup, f"user={user}"))
        # today's run and the two latest older days
        assert kept[:2] == ["2026-06-10", "2026-06-11"] and len(kept) == 3, kept
    assert len(snapshots(setup, "claim=claim-gone")) == 1
    others = [s for s in snapshots(setup) if s["hostname"] == "elsewhere"]
    assert len(others) == len(days)

    weekly = setup.run(keep_daily="1", keep_weekly="2", keep_monthly="0")
    assert weekly.returncode == 0, weekly.stderr
    kept = sorted(s["time"][:10] for s in snapshots(setup, "user=alice"))
    # one daily (today's latest) and two weekly: this week's is the same, 2026-06-11's week
    assert kept[0] == "2026-06-11" and len(kept) == 2, kept
    setup.plain("check")
