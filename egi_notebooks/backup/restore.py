"""Listing and restoring one user's snapshots, never over existing files.

A restore goes into a new folder of the user's home, ``restored-YYYY-MM-DD/`` (the snapshot's
date, UTC; ``-2``, ``-3``... when that name is taken), or into a given empty directory (a new
claim mounted for the purpose). Only ``in_place`` writes into the home itself, over the files
there, and the caller must have confirmed it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from .restic import Restic, ResticError
from .volumes import tag, tag_values


def is_dir(path: str) -> bool:
    return os.path.isdir(path)


class RestoreError(Exception):
    """A restore that cannot or must not be done; the message is for the operator."""


@dataclass
class Snapshot:
    id: str
    short_id: str
    time: dt.datetime
    user: str | None
    claim: str | None
    vo: str | None
    kind: str | None

    @classmethod
    def from_restic(cls, raw: dict[str, Any]) -> Snapshot:
        tags = tag_values(raw.get("tags"))
        return cls(
            id=raw["id"],
            short_id=raw.get("short_id") or raw["id"][:8],
            time=parse_time(raw["time"]),
            user=tags.get("user"),
            claim=tags.get("claim"),
            vo=tags.get("vo"),
            kind=tags.get("kind"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "short_id": self.short_id,
            "time": self.time.isoformat(),
            "user": self.user,
            "claim": self.claim,
            "vo": self.vo,
            "kind": self.kind,
        }


def parse_time(value: str) -> dt.datetime:
    """restic's RFC 3339 time (nanoseconds) as an aware datetime in UTC."""
    value = value.replace("Z", "+00:00")
    head, sep, rest = value.partition(".")
    if sep:  # Python takes at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC)


async def user_snapshots(restic: Restic, user: str, claim: str | None = None) -> list[Snapshot]:
    """The snapshots tagged with ``user`` (and ``claim``), oldest first."""
    tags = [tag("user", user)] + ([tag("claim", claim)] if claim else [])
    found = [Snapshot.from_restic(s) for s in await restic.snapshots(tags)]
    # the tag filter is exact, but a snapshot must name this very user to be restored to them
    return sorted((s for s in found if s.user == user), key=lambda s: s.time)


def choose(snapshots: list[Snapshot], snapshot_id: str = "", date: str = "") -> Snapshot:
    """The snapshot asked for: by id (prefix), the last one on or before ``date``
    (YYYY-MM-DD, UTC), else the latest."""
    if not snapshots:
        raise RestoreError("no snapshots for this user")
    if snapshot_id:
        matches = [s for s in snapshots if s.id.startswith(snapshot_id.lower())]
        if not matches:
            raise RestoreError(f"snapshot {snapshot_id} is not one of this user's")
        if len(matches) > 1:
            raise RestoreError(f"snapshot id {snapshot_id} is ambiguous: give more digits")
        return matches[0]
    if date:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            raise RestoreError(f"--date {date!r}: expected YYYY-MM-DD") from None
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        before = [s for s in snapshots if s.time < end]
        if not before:
            raise RestoreError(f"no snapshot of this user on or before {date}")
        return before[-1]
    return snapshots[-1]


def new_folder(home: str, day: dt.date) -> str:
    """Create and return ``home/restored-YYYY-MM-DD`` (or ``-2``...): always a new directory,
    made atomically, so two restores never share one."""
    base = os.path.join(home, f"restored-{day.isoformat()}")
    for n in range(1, 1000):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        return path
    raise RestoreError(f"too many restored folders in {home}")


def merge_over(source: str, dest: str) -> None:
    """Move everything under ``source`` into ``dest``, replacing what is there (files and
    links atomically, each with :func:`os.replace`); entries of ``dest`` that ``source`` does
    not have stay. Both are on one filesystem (``source`` is made inside ``dest``)."""
    for entry in os.scandir(source):
        target = os.path.join(dest, entry.name)
        if entry.is_dir(follow_symlinks=False):
            if os.path.isdir(target) and not os.path.islink(target):
                merge_over(entry.path, target)
                continue
            if os.path.lexists(target):
                os.unlink(target)
            os.rename(entry.path, target)
            continue
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(entry.path, target)


def empty_target(path: str) -> str:
    """``path`` as a restore target: created if missing, refused unless empty."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise RestoreError(f"cannot create {path}: {e.strerror}") from None
    if not os.path.isdir(path):
        raise RestoreError(f"{path} is not a directory")
    if os.listdir(path):
        raise RestoreError(f"{path} is not empty: restore into an empty directory")
    return path


async def restore(
    restic: Restic,
    snapshot: Snapshot,
    home: str | None,
    target: str = "",
    in_place: bool = False,
) -> str:
    """Restore ``snapshot``; the directory its files went to.

    ``target``: an empty (or new) directory; else ``in_place``: into ``home`` itself (over
    existing files: the caller has confirmed); else a new ``restored-<date>`` folder of
    ``home``.
    """
    if target:
        where = empty_target(target)
    elif in_place:
        if not home or not is_dir(home):
            raise RestoreError(f"the home directory {home!r} of claim {snapshot.claim} is missing")
        where = home
        staging = tempfile.mkdtemp(prefix=".egi-notebooks-restore-", dir=home)
        try:
            await restic.restore(snapshot.id, staging)
            merge_over(staging, home)
        except ResticError as e:
            raise RestoreError(f"restic restore failed ({e.kind}): {e}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return where
    else:
        if not home or not is_dir(home):
            raise RestoreError(
                f"the home directory of claim {snapshot.claim} is not under the mount root: "
                "restore into a new claim with --target"
            )
        where = new_folder(home, snapshot.time.date())
    try:
        await restic.restore(snapshot.id, where)
    except ResticError as e:
        raise RestoreError(f"restic restore failed ({e.kind}): {e}") from None
    return where
