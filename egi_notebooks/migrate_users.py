"""``egi-notebooks migrate-users``: rename egi-notebooks-hub 1.0 users to their ``voperson_id``.

egi-notebooks-hub 1.0 named hub users after ``preferred_username`` (which a Check-in user can
change); EGICheckinAuthenticator names them after ``voperson_id``. This command renames each
hub user to the ``voperson_id`` stored in its auth_state (``auth_state["oauth_user"]``, where
both authenticators keep the claims) with the hub's rename API, so that the next login with
``username_claim = "voperson_id"`` finds the same hub user: same id, servers, groups, tokens.
It then moves the members of 1.0's hub groups named by full entitlement URNs to the VO-named
groups the authenticator now manages and deletes the URN groups. Roles granted to a URN group
go with it: the dry run lists those groups.

It is a dry run unless ``--apply`` is given::

    egi-notebooks migrate-users            # what would change
    egi-notebooks migrate-users --apply

Users are skipped, and said so, when a server of theirs is running or starting (renaming
them would change the names of objects their running server uses: run again once stopped),
when their auth_state has no ``voperson_id`` (1.0 did not request that scope: they get it at
their next login with the new scopes), or when the new name is taken. The hub API URL and
token come from ``JUPYTERHUB_API_URL`` / ``JUPYTERHUB_API_TOKEN`` (never from the command
line, where other local users could read the token); the token needs the scopes in
:data:`SCOPES`. Exit status: 0 when nothing failed (skipped users are not failures), 1 when
any user or group failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from egi_notebooks.auth.usernames import default_pattern, usable_username
from egi_notebooks.cli import HelpFormatter
from egi_notebooks.entitlements import parse_entitlement
from egi_notebooks.services.hub import HubAPIError, HubClient

#: The role of the token this command uses (``admin:users`` includes ``admin:auth_state``
#: and ``list:users``; ``admin:groups`` includes ``list:groups``, ``groups`` and
#: ``delete:groups``).
SCOPES = ["admin:users", "read:servers", "admin:groups"]
DEFAULT_API_URL = "http://127.0.0.1:8081/hub/api"

log = logging.getLogger(__name__)


@dataclass
class Report:
    dry_run: bool
    renamed: list[tuple[str, str]] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    running: list[tuple[str, list[str]]] = field(default_factory=list)
    no_claim: list[str] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)
    no_auth_state: list[str] = field(default_factory=list)
    collisions: list[tuple[str, str]] = field(default_factory=list)
    groups_moved: list[tuple[str, str, list[str]]] = field(default_factory=list)
    groups_deleted: list[str] = field(default_factory=list)
    groups_with_roles: list[tuple[str, list[str]]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def print(self, out: Any = None, err: Any = None) -> None:
        out, err = out or sys.stdout, err or sys.stderr
        would = "would " if self.dry_run else ""
        for entries in vars(self).values():
            if isinstance(entries, list):
                entries.sort()  # users were handled concurrently: print in a stable order
        for old, new in self.renamed:
            print(f"{would}rename {old!r} -> {new!r}", file=out)
        for name, servers in self.running:
            listed = ", ".join(repr(s) if s else "default" for s in servers)
            print(f"skip {name!r}: server(s) running or starting ({listed})", file=out)
        for name in self.no_claim:
            print(f"skip {name!r}: no voperson_id in auth_state", file=out)
        for name in self.unusable:
            print(f"skip {name!r}: its voperson_id is not one the authenticator accepts", file=out)
        for name in self.no_auth_state:
            print(f"skip {name!r}: no auth_state (never logged in through the provider)", file=out)
        for name, target in self.collisions:
            print(f"skip {name!r}: a user named {target!r} already exists", file=out)
        for urn, vo, users in self.groups_moved:
            print(f"{would}move {len(users)} member(s) of group {urn!r} to {vo!r}", file=out)
        for urn in self.groups_deleted:
            print(f"{would}delete group {urn!r}", file=out)
        for urn, roles in self.groups_with_roles:
            print(f"note: group {urn!r} has role(s) {', '.join(roles)}: grant them to the"
                  " VO group", file=out)  # fmt: skip
        for what, error in self.failed:
            print(f"FAILED {what}: {error}", file=err)
        without = len(self.no_claim) + len(self.no_auth_state) + len(self.unusable)
        skipped = len(self.running) + without + len(self.collisions)
        renamed, deleted = ("to rename", "to delete") if self.dry_run else ("renamed", "deleted")
        print(
            f"users: {len(self.renamed)} {renamed}, {len(self.already)} already named by"
            f" voperson_id, {skipped} skipped ({len(self.running)} running,"
            f" {without} without voperson_id, {len(self.collisions)} name taken);"
            f" URN groups: {len(self.groups_deleted)} {deleted};"
            f" {len(self.failed)} failed" + (" (dry run: nothing changed)" if self.dry_run else ""),
            file=out,
        )


class UnusableClaim(Exception):
    """The claim is there, but the authenticator would refuse it at login."""


def target_name(auth_state: Any, claim: str, key: str) -> str | None:
    """The name the authenticator gives this user now: the claim, lowercased as JupyterHub
    normalizes names; None when auth_state does not hold it. UnusableClaim when the
    authenticator would refuse the value at login (renaming to it would lock the user out)."""
    claims = auth_state.get(key) if isinstance(auth_state, dict) else None
    value = claims.get(claim) if isinstance(claims, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    if not usable_username(value, default_pattern(claim)):
        raise UnusableClaim(value)
    return value.lower()


def _path(name: str) -> str:
    return quote(name, safe="")


class Migration:
    def __init__(self, hub: HubClient, args: argparse.Namespace) -> None:
        self.hub = hub
        self.args = args
        self.report = Report(dry_run=not args.apply)
        self.names: set[str] = set()

    async def run(self) -> Report:
        users = [u async for u in self.hub.users()]
        self.names = {u["name"] for u in users}
        semaphore = asyncio.Semaphore(max(1, self.args.concurrency))

        async def one(name: str) -> None:
            async with semaphore:
                try:
                    await self.migrate_user(name)
                except (HubAPIError, ValueError) as e:
                    self.report.failed.append((f"user {name!r}", str(e)))

        await asyncio.gather(*(one(u["name"]) for u in users))
        if self.args.groups:
            await self.migrate_groups()
        return self.report

    async def migrate_user(self, name: str) -> None:
        model = await self.hub.json("GET", f"/users/{_path(name)}")
        if not model.get("auth_state"):
            self.report.no_auth_state.append(name)
            return
        try:
            target = target_name(model["auth_state"], self.args.claim, self.args.auth_state_key)
        except UnusableClaim:
            self.report.unusable.append(name)
            return
        if target is None:
            self.report.no_claim.append(name)
            return
        if target == name:
            self.report.already.append(name)
            return
        servers = sorted((model.get("servers") or {}).keys())
        if servers or model.get("pending"):
            self.report.running.append((name, servers or [""]))
            return
        if target in self.names:
            self.report.collisions.append((name, target))
            return
        # Claimed before any await: two users with one voperson_id cannot both take it.
        self.names.add(target)
        if not self.report.dry_run:
            await self.rename(name, target)
            self.names.discard(name)
        self.report.renamed.append((name, target))

    async def rename(self, name: str, target: str) -> None:
        response = await self.hub.request("PATCH", f"/users/{_path(name)}", json={"name": target})
        if response.status_code == 200:
            return
        if response.status_code == 404:
            # A retried PATCH whose first attempt went through (the hub answered 5xx late).
            check = await self.hub.request("GET", f"/users/{_path(target)}")
            if check.status_code == 200:
                return
        raise HubAPIError("PATCH", f"/users/{name}", response.status_code, response.text[:200])

    async def migrate_groups(self) -> None:
        async for group in self.hub.paginate("/groups"):
            urn = group.get("name", "")
            entitlement = parse_entitlement(urn)
            if entitlement is None:
                continue
            try:
                await self.migrate_group(urn, entitlement.vo, group)
            except HubAPIError as e:
                self.report.failed.append((f"group {urn!r}", str(e)))

    async def migrate_group(self, urn: str, vo: str, group: dict) -> None:
        users = sorted(group.get("users") or [])
        if group.get("roles"):
            self.report.groups_with_roles.append((urn, sorted(group["roles"])))
        if users:
            if not self.report.dry_run:
                await self.add_to_group(vo, users)
            self.report.groups_moved.append((urn, vo, users))
        if not self.report.dry_run:
            await self.hub.json("DELETE", f"/groups/{_path(urn)}", ok=(204, 404))
        self.report.groups_deleted.append(urn)

    async def add_to_group(self, vo: str, users: list[str]) -> None:
        created = await self.hub.request("POST", f"/groups/{_path(vo)}", json={"users": users})
        if created.status_code == 201:
            return
        if created.status_code != 409:  # 409: the VO group exists
            raise HubAPIError("POST", f"/groups/{vo}", created.status_code, created.text[:200])
        await self.hub.json("POST", f"/groups/{_path(vo)}/users", json={"users": users})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="egi-notebooks migrate-users",
        formatter_class=HelpFormatter,
        description="Rename egi-notebooks-hub 1.0 users (preferred_username) to their "
        "voperson_id and replace the entitlement-URN hub groups by VO groups. Dry run unless "
        "--apply. Hub API from $JUPYTERHUB_API_URL, token from $JUPYTERHUB_API_TOKEN "
        f"(scopes: {', '.join(SCOPES)}).",
    )
    parser.add_argument("--apply", action="store_true", help="make the changes (default: dry run)")
    parser.add_argument(
        "--claim", default="voperson_id", help="claim holding the new name (default voperson_id)"
    )
    parser.add_argument(
        "--auth-state-key",
        default="oauth_user",
        help="auth_state key of the stored claims (oauthenticator's user_auth_state_key, "
        "default oauth_user, as in 1.0)",
    )
    parser.add_argument(
        "--no-groups",
        dest="groups",
        action="store_false",
        help="leave the entitlement-URN groups alone",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="users handled at once")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per API request")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, api_url: str, token: str) -> Report:
    async with HubClient(api_url, token, timeout=args.timeout, logger=log) as hub:
        return await Migration(hub, args).run()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    api_url = os.environ.get("JUPYTERHUB_API_URL", DEFAULT_API_URL)
    if not token:
        print(
            "egi-notebooks migrate-users: set JUPYTERHUB_API_TOKEN to a token with the scopes "
            + ", ".join(SCOPES),
            file=sys.stderr,
        )
        return 2
    try:
        report = asyncio.run(run(args, api_url, token))
    except HubAPIError as e:  # listing users failed: nothing was done
        hint = f" (the token needs {', '.join(SCOPES)})" if e.status == 403 else ""
        print(f"egi-notebooks migrate-users: {e}{hint}", file=sys.stderr)
        return 1
    report.print()
    return 1 if report.failed else 0
