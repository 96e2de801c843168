"""Which volumes a backup run covers, and the tags their snapshots carry.

A home claim is found two ways, and a run backs up the union:

- from the hub's users (REST API, paginated): EGISpawner's claim name of each user
  (``claim_name_template``, default ``claim-{user_slug}``, with
  :func:`egi_notebooks.spawner.names.user_slug`), when its directory is under the mount root;
- from the directories under the mount root whose names have the shape of EGISpawner's claim
  names: so the claim of a user deleted from the hub keeps being backed up for as long as the
  claim exists. Its user is the one earlier snapshots of the claim are tagged with, or the
  slug itself when it is an as-is username (``claim-alice``).

The mount root is where the home export is mounted (the hub pod's or the CronJob's volume):
one directory per claim, named by ``claim_path_template`` (default ``{claim}``; a ``*`` in it
matches anything, for provisioners that add the namespace or the volume name, such as
nfs-subdir-external-provisioner's ``{namespace}-{claim}-pvc-*``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..spawner.names import user_slug

HOME = "home"
VO = "vo"


@dataclass
class Volume:
    """One directory to back up: a user's home claim or a VO's shared claim."""

    claim: str
    path: str
    user: str | None = None
    vo: str | None = None
    kind: str = HOME

    @property
    def key(self) -> str:
        return self.claim

    def tags(self) -> list[str]:
        tags = [tag("claim", self.claim), tag("kind", self.kind)]
        if self.user:
            tags.append(tag("user", self.user))
        if self.vo:
            tags.append(tag("vo", self.vo))
        return tags

    def describe(self) -> str:
        who = f"user {self.user!r}" if self.user else f"VO {self.vo!r}" if self.vo else "no user"
        return f"claim {self.claim} ({who})"


def _escape(value: str) -> str:
    # restic splits tags at commas: a comma (and the escape character) are percent-encoded
    return value.replace("%", "%25").replace(",", "%2C")


def _unescape(value: str) -> str:
    return value.replace("%2C", ",").replace("%25", "%")


def tag(name: str, value: str) -> str:
    """The restic tag ``name=value`` (commas in ``value`` encoded)."""
    return f"{name}={_escape(value)}"


def tag_values(tags: list[str] | None) -> dict[str, str]:
    """``{"user": ..., "claim": ..., "vo": ...}`` from a snapshot's tags."""
    values = {}
    for t in tags or []:
        name, sep, value = t.partition("=")
        if sep:
            values[name] = _unescape(value)
    return values


def claim_name(username: str, template: str = "claim-{user_slug}") -> str:
    """EGISpawner's home claim name of ``username`` (its default server)."""
    return template.replace("{user_slug}", user_slug(username)).replace("{username}", username)


def _path_regex(path_template: str, claim_template: str, namespace: str) -> re.Pattern[str]:
    """A directory name of ``path_template`` -> the claim name in it."""
    before, _, after = claim_template.partition("{user_slug}")
    claim = re.escape(before) + r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?" + re.escape(after)
    parts = []
    for piece in re.split(r"(\{claim\}|\{namespace\}|\*)", path_template):
        if piece == "{claim}":
            parts.append(f"(?P<claim>{claim})")
        elif piece == "{namespace}":
            parts.append(re.escape(namespace))
        elif piece == "*":
            parts.append(".*")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def mounted_claims(
    root: str,
    path_template: str = "{claim}",
    claim_template: str = "claim-{user_slug}",
    namespace: str = "",
) -> dict[str, str]:
    """``{claim name: directory}`` of the claims found under ``root``."""
    pattern = _path_regex(path_template, claim_template, namespace)
    found: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found.setdefault(match.group("claim"), entry.path)
    return found


def slug_username(claim: str, claim_template: str = "claim-{user_slug}") -> str | None:
    """The username in an as-is claim name (``claim-alice`` -> ``alice``), else None: a
    hashed slug cannot be turned back into its username."""
    before, _, after = claim_template.partition("{user_slug}")
    if not claim.startswith(before) or not claim.endswith(after):
        return None
    slug = claim[len(before) : len(claim) - len(after) if after else None]
    return slug if slug and user_slug(slug) == slug and "---" not in slug else None


def select_volumes(
    mounted: dict[str, str],
    hub_users: dict[str, str | None],
    known_users: dict[str, str],
    vo_claims: dict[str, str],
    claim_template: str = "claim-{user_slug}",
) -> tuple[list[Volume], list[str]]:
    """The volumes of a run, and the hub users whose claim is not under the mount root.

    ``hub_users``: username -> primary VO; ``known_users``: claim -> the user earlier
    snapshots name; ``vo_claims``: shared claim -> its VO.
    """
    volumes: dict[str, Volume] = {}
    missing = []
    for username, vo in sorted(hub_users.items()):
        claim = claim_name(username, claim_template)
        if claim in mounted:
            volumes[claim] = Volume(claim, mounted[claim], username, vo)
        else:
            missing.append(username)
    for claim, path in mounted.items():
        if claim in volumes or claim in vo_claims:
            continue
        user = known_users.get(claim) or slug_username(claim, claim_template)
        volumes[claim] = Volume(claim, path, user)
    return list(volumes.values()), missing
