"""Listing and restoring one user's snapshots, never over existing files.

A restore goes into a new folder of the user's home, ``restored-YYYY-MM-DD/`` (the snapshot's
date, UTC; ``-2``, ``-3``... when that name is taken), or into a given empty directory (a new
claim mounted for the purpose). Only ``in_place`` writes into the home itself, over the files
there, and the caller must have confirmed it.

restic never writes into a claim: the user's processes run as the restore's uid and could put
a link to another claim where it writes. It restores into a private staging directory out of
the users' reach, and the files are then moved in without following links (:mod:`.placing`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from .placing import ATTEMPTS, PlacingError, inspect, open_dir, open_under, place
from .restic import Restic, ResticError
from .volumes import tag, tag_values

log = logging.getLogger(__name__)


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


def new_folder(home_fd: int, day: dt.date) -> tuple[str, int]:
    """Create ``restored-YYYY-MM-DD`` (or ``-2``...) in the directory ``home_fd``: always a new
    directory, made atomically, so two restores never share one; (its name, a descriptor of
    it, opened without following a link)."""
    base = f"restored-{day.isoformat()}"
    replaced = 0
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(name, 0o755, dir_fd=home_fd)
        except FileExistsError:  # a folder, a file or a link: never reused
            continue
        try:
            return name, open_dir(name, home_fd)
        except OSError as e:  # replaced (by a link, say) as soon as made: the next name
            replaced += 1
            if replaced >= ATTEMPTS:
                raise RestoreError(
                    f"{name} keeps being replaced during the restore ({e.strerror}): stopped"
                ) from None
    raise RestoreError("too many restored folders in the home")


def check_staging(staging: str, mount_root: str, destination: str) -> str:
    """``staging`` (absolute) when no user can reach it: not in the destination and, under the
    mount root, only in a folder whose name starts with a dot (the names of claims and
    namespaces never do, so it is in no claim); RestoreError otherwise."""
    path = os.path.realpath(staging)

    def below(outer: str) -> str | None:
        """``path`` relative to ``outer`` when it is inside it."""
        outer = os.path.realpath(outer)
        if path == outer or path.startswith(outer.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, outer)
        return None

    inside_destination = bool(destination) and below(destination) is not None
    rel = below(mount_root) if mount_root else None
    if inside_destination or (rel is not None and not rel.startswith(".")) or rel == ".":
        raise RestoreError(
            f"the restore staging directory {staging} is where a user can reach it: set "
            "restore_staging_dir outside every claim (see the backup docs)"
        )
    return path


def open_destination(home: str | None, target: str, root: str, claim: str | None) -> int:
    """A descriptor of the directory the restore goes into: ``target`` (the operator's path),
    else the claim ``home``, every component below ``root`` opened without following a link."""
    if target:
        try:
            os.makedirs(target, exist_ok=True)
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise RestoreError(f"cannot create {target}: {e.strerror}") from None
        if os.listdir(fd):
            os.close(fd)
            raise RestoreError(f"{target} is not empty: restore into an empty directory")
        return fd
    if not home:
        raise RestoreError(
            f"the home directory of claim {claim} is not under the mount root: "
            "restore into a new claim with --target"
        )
    try:
        return open_under(root or os.path.dirname(home), home)
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise RestoreError(
            f"the home directory {home} of claim {claim} cannot be opened as a directory "
            f"without following links ({reason})"
        ) from None


async def restore(
    restic: Restic,
    snapshot: Snapshot,
    home: str | None,
    target: str = "",
    in_place: bool = False,
    *,
    root: str = "",
    staging_dir: str = "",
) -> str:
    """Restore ``snapshot``; the directory its files went to.

    ``target``: an empty (or new) directory; else ``in_place``: into ``home`` itself (over
    existing files: the caller has confirmed); else a new ``restored-<date>`` folder of
    ``home``. ``root``: the mount root, above which paths are the operator's (trusted).

    restic writes into a private directory made (mode 0700) in ``staging_dir`` (default: the
    temporary directory), never into the claim; what it wrote is checked, then moved into the
    destination without following any link (:mod:`.placing`), so the user's own processes
    cannot turn the restore into a write outside their claim, whatever they do meanwhile.
    """
    destination_fd = open_destination(home, target, root, snapshot.claim)
    try:
        staging_root = staging_dir or tempfile.gettempdir()
        check_staging(staging_root, root, target or home or "")
        try:
            os.makedirs(staging_root, mode=0o700, exist_ok=True)
            staging = tempfile.mkdtemp(prefix="egi-notebooks-restore-", dir=staging_root)
        except OSError as e:
            raise RestoreError(f"cannot make a staging directory in {staging_root}: {e}") from None
        try:
            try:
                await restic.restore(snapshot.id, staging)
            except ResticError as e:
                raise RestoreError(f"restic restore failed ({e.kind}): {e}") from None
            staged = open_dir(staging)
            try:
                try:
                    skipped = inspect(staged)
                except PlacingError as e:
                    raise RestoreError(f"refused, the snapshot's {e}") from None
                if skipped:
                    log.warning("not restored (devices, fifos or sockets): %s", ", ".join(skipped))
                if target:
                    where = target
                    into = os.dup(destination_fd)
                elif in_place:
                    where = home or ""
                    into = os.dup(destination_fd)
                else:
                    name, into = new_folder(destination_fd, snapshot.time.date())
                    where = os.path.join(home or "", name)
                try:
                    place(staged, into, skipped)
                except PlacingError as e:
                    raise RestoreError(
                        f"restore into {where} stopped at {e}; nothing was written outside it"
                    ) from None
                finally:
                    os.close(into)
            finally:
                os.close(staged)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        os.close(destination_fd)
    return where
