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

Each user it renames, or finds named by ``voperson_id`` already, is bound to its provider
identity (``sub``, or the authenticator's ``identity_claim``: :mod:`egi_notebooks.identity`)
with its 1.0 name recorded for that identity in auth_state: the authenticator then refuses a
login of another identity as that user, and EGISpawner adopts the 1.0 home claims of that
name (which record no owner) for that identity only.

Users are skipped, and said so, when a server of theirs is running or starting (renaming
them would change the names of objects their running server uses: run again once stopped),
when their auth_state has no ``voperson_id`` (1.0 did not request that scope: they get it at
their next login with the new scopes), or when the new name is taken by an account no identity
is bound to. A **collision** changes nothing for the accounts involved and makes the exit
status 1: an account whose 1.0 name is a voperson_id-style name other than its own (1.0 names
were changeable ``preferred_username`` values: after the switch the person with that
voperson_id would log in under it), or whose new name is held by an account bound to another
identity. Entitlement-URN groups of namespaces or authorities the authenticator does not trust
are left alone (their members are not made members of a VO group).

The authenticator's settings (``identity_claim``, ``user_auth_state_key``, the entitlement
trust) are read from the hub's configuration file, as the hub reads them (``--config``,
default ``jupyterhub_config.py`` when the current directory has one, else the defaults). The
hub API URL and token come from ``JUPYTERHUB_API_URL`` / ``JUPYTERHUB_API_TOKEN`` (never from
the command line, where other local users could read the token); the token needs the scopes in
:data:`SCOPES`. Exit status: 0 when nothing failed and nothing collided (skipped users are not
failures), 1 when any user or group failed or collided, 2 for a usage or configuration error.
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
from egi_notebooks.entitlements import EntitlementTrust, issuer_defaults, parse_entitlement
from egi_notebooks.identity import (
    IDENTITY_KEY,
    LEGACY_NAMES_KEY,
    bound_identity,
    legacy_names,
    legacy_record,
)
from egi_notebooks.services.hub import HubAPIError, HubClient

#: The role of the token this command uses (``admin:users`` includes ``admin:auth_state``
#: and ``list:users``; ``admin:groups`` includes ``list:groups``, ``groups`` and
#: ``delete:groups``).
SCOPES = ["admin:users", "read:servers", "admin:groups"]
DEFAULT_API_URL = "http://127.0.0.1:8081/hub/api"
DEFAULT_CONFIG = "jupyterhub_config.py"

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
    collisions: list[tuple[str, str]] = field(default_factory=list)  # name taken, unbound
    squatted: list[tuple[str, str]] = field(default_factory=list)  # (name, own new name)
    contested: list[tuple[str, str]] = field(default_factory=list)  # (name, held new name)
    no_identity: list[str] = field(default_factory=list)
    bound: list[str] = field(default_factory=list)  # identity (and 1.0 name) recorded
    groups_untrusted: list[tuple[str, list[str]]] = field(default_factory=list)
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
        for name in self.no_identity:
            print(f"skip {name!r}: no identity claim in auth_state to bind it to", file=out)
        for name, own in self.squatted:
            print(
                f"COLLISION {name!r}: this name has the form of a voperson_id but the"
                f" account's own is {own!r}; after the switch the person whose voperson_id"
                f" is {name!r} would log in under it (refused: it is bound to another"
                " identity). Nothing changed for it: find out whose it is and rename it by"
                f' hand (PATCH /hub/api/users/{_path(name)} with {{"name": {own!r}}}).',
                file=err,
            )
        for name, target in self.contested:
            print(
                f"COLLISION {name!r}: its new name {target!r} is held by an account bound to"
                " another identity. Nothing changed for either: find out whose"
                f" {target!r} is and rename one of them by hand.",
                file=err,
            )
        for urn, users in self.groups_untrusted:
            print(
                f"skip group {urn!r}: its namespace or authority is not trusted by the"
                f" authenticator; {len(users)} member(s) not moved, group left alone",
                file=out,
            )
        for urn, vo, users in self.groups_moved:
            print(f"{would}move {len(users)} member(s) of group {urn!r} to {vo!r}", file=out)
        for urn in self.groups_deleted:
            print(f"{would}delete group {urn!r}", file=out)
        for urn, roles in self.groups_with_roles:
            print(f"note: group {urn!r} has role(s) {', '.join(roles)}: grant them to the"
                  " VO group", file=out)  # fmt: skip
        for what, error in self.failed:
            print(f"FAILED {what}: {error}", file=err)
        without = (
            len(self.no_claim)
            + len(self.no_auth_state)
            + len(self.unusable)
            + len(self.no_identity)
        )
        skipped = len(self.running) + without + len(self.collisions)
        renamed, deleted = ("to rename", "to delete") if self.dry_run else ("renamed", "deleted")
        bound = "to bind" if self.dry_run else "bound"
        print(
            f"users: {len(self.renamed)} {renamed}, {len(self.already)} already named by"
            f" voperson_id, {len(self.bound)} {bound} to their identity, {skipped} skipped"
            f" ({len(self.running)} running, {without} without voperson_id,"
            f" {len(self.collisions)} name taken), {self.collision_count} collision(s);"
            f" URN groups: {len(self.groups_deleted)} {deleted},"
            f" {len(self.groups_untrusted)} untrusted left alone;"
            f" {len(self.failed)} failed" + (" (dry run: nothing changed)" if self.dry_run else ""),
            file=out,
        )

    @property
    def collision_count(self) -> int:
        return len(self.squatted) + len(self.contested)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed or self.collision_count else 0


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


@dataclass(frozen=True)
class Settings:
    """What the hub's authenticator is configured with, as migrate-users needs it."""

    identity_claim: str = "sub"
    auth_state_key: str = "oauth_user"
    trust: EntitlementTrust = field(
        default_factory=lambda: _trust_of(issuer_defaults("https://aai.egi.eu/auth/realms/egi"))
    )
    source: str = "the authenticator's defaults"


def _trust_of(defaults: Any) -> EntitlementTrust:
    return EntitlementTrust(defaults.namespaces, defaults.authorities, defaults.without_authority)


def load_settings(path: str | None) -> Settings:
    """The authenticator's settings from the hub configuration file ``path`` (None: the
    defaults), computed by EGICheckinAuthenticator itself from the file's configuration, so
    that defaults derived from other settings (the trust of ``oidc_issuer``) come out as in
    the hub. ValueError when the file cannot be read or its values are invalid."""
    from traitlets.config import Config, PyFileConfigLoader
    from traitlets.config.loader import ConfigFileNotFound

    from egi_notebooks.auth.authenticator import EGICheckinAuthenticator

    config = Config()
    if path is not None:
        directory, name = os.path.split(os.path.abspath(path))
        try:
            config = PyFileConfigLoader(name, path=directory).load_config()
        except ConfigFileNotFound:
            raise ValueError(f"no such configuration file: {path}") from None
        except Exception as e:  # the file is Python: any error in it
            raise ValueError(f"{path}: {type(e).__name__}: {e}") from None

    class Configured(EGICheckinAuthenticator):
        def check_configuration(self) -> None:
            """The hub's start-up checks (crypt key...) concern the hub, not this command."""

    try:
        authenticator = Configured(config=config)
    except Exception as e:  # traitlets' validation: one line naming the trait
        raise ValueError(f"{path or 'defaults'}: {e}") from None
    return Settings(
        identity_claim=authenticator.identity_claim,
        auth_state_key=authenticator.user_auth_state_key,
        trust=authenticator.entitlement_trust,
        source=path or "the authenticator's defaults",
    )


def _path(name: str) -> str:
    return quote(name, safe="")


class Migration:
    def __init__(
        self, hub: HubClient, args: argparse.Namespace, settings: Settings | None = None
    ) -> None:
        self.hub = hub
        self.args = args
        self.settings = settings or Settings()
        self.report = Report(dry_run=not args.apply)
        self.names: set[str] = set()
        self.identities: dict[str, str | None] = {}  # name -> identity it is bound to
        self.models: dict[str, dict] = {}

    @property
    def auth_state_key(self) -> str:
        return self.args.auth_state_key or self.settings.auth_state_key

    async def run(self) -> Report:
        users = [u async for u in self.hub.users()]
        self.names = {u["name"] for u in users}
        semaphore = asyncio.Semaphore(max(1, self.args.concurrency))

        async def bounded(name: str, step: Any) -> None:
            async with semaphore:
                try:
                    await step(name)
                except (HubAPIError, ValueError) as e:
                    self.report.failed.append((f"user {name!r}", str(e)))

        # every account's identity first: a collision involves two accounts
        await asyncio.gather(*(bounded(u["name"], self.fetch) for u in users))
        await asyncio.gather(*(bounded(name, self.migrate_user) for name in list(self.models)))
        if self.args.groups:
            await self.migrate_groups()
        return self.report

    async def fetch(self, name: str) -> None:
        model = await self.hub.json("GET", f"/users/{_path(name)}")
        self.models[name] = model
        self.identities[name] = bound_identity(
            model.get("auth_state"), self.settings.identity_claim, self.auth_state_key
        )

    async def migrate_user(self, name: str) -> None:
        model = self.models[name]
        auth_state = model.get("auth_state")
        if not auth_state:
            self.report.no_auth_state.append(name)
            return
        try:
            target = target_name(auth_state, self.args.claim, self.auth_state_key)
        except UnusableClaim:
            self.report.unusable.append(name)
            return
        if target is None:
            self.report.no_claim.append(name)
            return
        identity = self.identities.get(name)
        if identity is None:
            self.report.no_identity.append(name)
            return
        servers = sorted((model.get("servers") or {}).keys())
        running = bool(servers or model.get("pending"))
        if target == name:
            self.report.already.append(name)
            if not running:  # a running server's tokens are refreshed: not written under it
                await self.bind(name, None, auth_state, identity)
            return
        if usable_username(name, default_pattern(self.args.claim)):
            # a name of the new scheme that is not this account's own: another person's
            self.report.squatted.append((name, target))
            return
        holder = self.identities.get(target, "") if target in self.names else None
        if holder:  # "" for a name taken meanwhile by this run
            if holder != identity:
                self.report.contested.append((name, target))
                return
        if running:
            self.report.running.append((name, servers or [""]))
            return
        if target in self.names:
            self.report.collisions.append((name, target))
            return
        # Claimed before any await: two users with one voperson_id cannot both take it.
        self.names.add(target)
        await self.bind(name, target, auth_state, identity)
        if not self.report.dry_run:
            self.names.discard(name)
        self.report.renamed.append((name, target))

    async def bind(self, name: str, target: str | None, auth_state: dict, identity: str) -> None:
        """Record the identity and 1.0 name of ``name`` in its auth_state, then rename it to
        ``target`` (unless None); nothing in a dry run."""
        recorded = legacy_names(auth_state) if auth_state.get(IDENTITY_KEY) == identity else []
        if target is None and name in recorded:
            return  # bound by an earlier run
        self.report.bound.append(name)
        if self.report.dry_run:
            return
        # The whole auth_state is written back: run this while users do not log in (the
        # cut-over), or a login in between loses its new tokens to the old ones.
        new_state = {
            **auth_state,
            IDENTITY_KEY: identity,
            LEGACY_NAMES_KEY: legacy_record(identity, [*recorded, name]),
        }
        # Two requests, the binding first: JupyterHub's PATCH of a name and an auth_state
        # awaits the encryption with the new name uncommitted, and any other request of the
        # hub that finishes meanwhile rolls the session back (the rename was lost in a CI
        # run). A binding without its rename is completed by the next run.
        await self.hub.json("PATCH", f"/users/{_path(name)}", json={"auth_state": new_state})
        if target is not None:
            await self.rename(name, target)

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
            if not self.settings.trust.trusts(entitlement):
                # what the authenticator ignores at login must not make VO members here
                self.report.groups_untrusted.append((urn, sorted(group.get("users") or [])))
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
        default=None,
        help="auth_state key of the stored claims (default: the authenticator's "
        "user_auth_state_key, oauth_user unless configured, as in 1.0)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="the hub's configuration file, read for the authenticator's identity_claim, "
        f"user_auth_state_key and entitlement trust (default: {DEFAULT_CONFIG} in the "
        "current directory if there is one, else the authenticator's defaults)",
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


async def run(
    args: argparse.Namespace, api_url: str, token: str, settings: Settings | None = None
) -> Report:
    async with HubClient(api_url, token, timeout=args.timeout, logger=log) as hub:
        return await Migration(hub, args, settings).run()


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
    path = args.config or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    try:
        settings = load_settings(path)
    except ValueError as e:
        print(f"egi-notebooks migrate-users: {e}", file=sys.stderr)
        return 2
    trust = settings.trust
    print(
        f"settings from {settings.source}: identity_claim {settings.identity_claim!r};"
        f" trusted entitlement namespaces {sorted(trust.namespaces)}, authorities"
        f" {sorted(trust.authorities)}" + (", and none" if trust.without_authority else "")
    )
    try:
        report = asyncio.run(run(args, api_url, token, settings))
    except HubAPIError as e:  # listing users failed: nothing was done
        hint = f" (the token needs {', '.join(SCOPES)})" if e.status == 403 else ""
        print(f"egi-notebooks migrate-users: {e}{hint}", file=sys.stderr)
        return 1
    report.print()
    return report.exit_status
