"""``egi-notebooks backup``: one restic snapshot per user volume per run, retention, checks.

Runs once and exits (a CronJob's command; the exit status is 1 when any volume failed) or,
with ``interval`` > 0, as a hub-managed service that runs every ``interval`` seconds. Each
volume's backup is isolated: a failure (repository locked, unreachable or full, a volume that
vanished mid-run) is recorded for that volume and the run goes on with the next one. See
``docs/deploy/backup.md``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from traitlets import Bool, Dict, Float, Integer, List, Unicode, default

from ..retry import retry
from ..services.hub import HubAPIError, HubServiceApp, bounded_map
from . import status as status_file
from .restic import Restic, ResticError
from .restore import parse_time
from .volumes import (
    HOME,
    VO,
    Volume,
    claim_name,
    mounted_claims,
    select_volumes,
    tag,
    tag_values,
)


def is_dir(path: str) -> bool:
    return os.path.isdir(path)


def no_repository(error: ResticError) -> bool:
    """Whether restic found no repository at all at the location (not one it cannot reach)."""
    text = str(error).lower()
    return "unable to open config file" in text or "is there a repository" in text


def is_empty(path: str) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


@dataclass
class Outcome:
    volume: Volume
    ok: bool
    snapshot: str | None = None
    bytes_added: int = 0
    error: str | None = None
    kind: str | None = None


class BackupApp(HubServiceApp):
    name = "egi-notebooks-backup"
    description = "Back up the users' home volumes with restic (one snapshot per volume)."

    repository = Unicode(
        "",
        config=True,
        help="restic repository, in restic's syntax: a local path, s3:https://host/bucket/path, "
        "rest:https://host:8000/path, sftp:... (default: $RESTIC_REPOSITORY). Credentials "
        "do not belong here: use repository_file, $AWS_SECRET_ACCESS_KEY or "
        "$RESTIC_REST_PASSWORD.",
    )
    repository_file = Unicode(
        "",
        config=True,
        help="File holding the repository URL (RESTIC_REPOSITORY_FILE), for URLs that "
        "carry credentials (rest:https://user:password@host/).",
    )
    password_file = Unicode(
        "",
        config=True,
        help="File holding the repository password (RESTIC_PASSWORD_FILE; default: "
        "$RESTIC_PASSWORD_FILE, else $RESTIC_PASSWORD). Never passed on a command line.",
    )
    restic = Unicode("restic", config=True, help="The restic command.")
    host = Unicode(
        "egi-notebooks",
        config=True,
        help="Prefix of the host name recorded in the snapshots: <host>/<claim>, the same for "
        "the hub service and a CronJob, so both make snapshots of one series per volume.",
    )
    init_repository = Bool(
        True, config=True, help="Initialise the repository on the first run if it has none."
    )
    mount_root = Unicode(
        "",
        config=True,
        help="Where the home export is mounted: one directory per claim under it, named by "
        "claim_path_template.",
    )
    claim_path_template = Unicode(
        "{claim}",
        config=True,
        help="Name of a claim's directory under mount_root: {claim}, {namespace}, and * for "
        "anything (nfs-subdir-external-provisioner: '{namespace}-{claim}-pvc-*').",
    )
    claim_name_template = Unicode(
        "claim-{user_slug}",
        config=True,
        help="EGISpawner's home claim name (its pvc_name_template): {user_slug}, {username}.",
    )
    namespace = Unicode(config=True, help="Kubernetes namespace, for claim_path_template.")

    @default("namespace")
    def _default_namespace(self) -> str:
        return os.environ.get("POD_NAMESPACE", "")

    use_hub = Bool(
        True,
        config=True,
        help="Ask the hub for its users (their claims and primary VO). Without an API token "
        "only the claims found under mount_root are backed up.",
    )
    api_token_file = Unicode(
        "",
        config=True,
        help="File holding the hub API token (a CronJob mounts it from a Secret; the hub "
        "gives a managed service $JUPYTERHUB_API_TOKEN instead).",
    )
    vo_priority = List(
        Unicode(),
        config=True,
        help="VOs in order of preference for a user's primary VO tag (from the user's hub "
        "groups, which EGICheckinAuthenticator keeps equal to the user's VOs).",
    )
    vo_claims = Dict(
        value_trait=Unicode(),
        config=True,
        help="VO shared claims to back up as well: {claim name: VO}.",
    )
    keep_last = Integer(
        0,
        config=True,
        help="Latest snapshots kept per volume whatever their date (0: none), on top of the "
        "daily/weekly/monthly ones: a daily policy keeps one snapshot per day, so the runs of "
        "a service with an interval under a day need this to stay restorable.",
    )
    keep_daily = Integer(7, config=True, help="Daily snapshots kept per volume (0: none).")
    keep_weekly = Integer(4, config=True, help="Weekly snapshots kept per volume (0: none).")
    keep_monthly = Integer(6, config=True, help="Monthly snapshots kept per volume (0: none).")
    gone_claim_retention_days = Float(
        0,
        config=True,
        help="Forget every snapshot of a claim that is gone once its newest snapshot is older "
        "than this many days (0: never). keep_daily and the others keep the latest days that "
        "have snapshots, so without this a claim that is gone keeps its last snapshots for "
        "ever. A claim counts as gone when it is not under the mount root and belongs to no "
        "hub user and no vo_claims entry; nothing is forgotten in a run that could not list "
        "the hub's users or found no claim under the mount root at all (a failed mount).",
    )
    prune = Bool(
        True, config=True, help="Run restic prune after forgetting snapshots (frees space)."
    )
    check_interval_days = Float(
        7, config=True, help="Run restic check when the last check is older than this (0: never)."
    )
    check_read_data_subset = Unicode(
        "",
        config=True,
        help="restic check --read-data-subset (e.g. '5%'): also read this part of the data.",
    )
    status_file = Unicode(
        "egi-notebooks-backup.json",
        config=True,
        help="JSON file with the last backup of every volume, read by the status service "
        "and `egi-notebooks backup check`.",
    )
    interval = Float(
        0,
        config=True,
        help="Seconds between runs as a hub-managed service; 0: run once and exit (CronJob).",
    )
    first_run_delay = Float(60, config=True, help="Seconds before the service's first run.")
    parallel = Integer(1, config=True, help="Volumes backed up at once.")
    volume_timeout = Float(
        6 * 3600, config=True, help="Seconds one volume's restic backup may take."
    )
    lock_attempts = Integer(
        4,
        config=True,
        help="Attempts of a restic command that finds the repository locked by another.",
    )
    lock_backoff = Float(30, config=True, help="Seconds before the second such attempt (doubling).")
    restore_staging_dir = Unicode(
        "",
        config=True,
        help="Where a restore puts the snapshot's files first (a new private directory, mode "
        "0700, made in it for each restore) before checking them and moving them into the "
        "claim without following links (default: the temporary directory, $TMPDIR or /tmp). "
        "No user may reach it: outside every claim; under mount_root only in a folder whose "
        "name starts with a dot, such as /homes/.egi-notebooks-restore, where the files are "
        "moved by renaming instead of being copied.",
    )
    warning_days = Float(
        1, config=True, help="Check: WARNING when a volume's last backup is older (days)."
    )
    critical_days = Float(
        3, config=True, help="Check: CRITICAL when a volume's last backup is older (days)."
    )

    aliases = {
        "repository": "BackupApp.repository",
        "password-file": "BackupApp.password_file",
        "mount-root": "BackupApp.mount_root",
        "status-file": "BackupApp.status_file",
        "interval": "BackupApp.interval",
        "log-level": "Application.log_level",
        "config": "BackupApp.config_file",
    }

    _init_lock: asyncio.Lock
    _init_tried: bool = False
    _init_error: ResticError | None = None

    config_file = Unicode("", config=True, help="Python or JSON configuration file to load.")

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
        if self.api_token_file and not self.api_token:
            with open(self.api_token_file, encoding="utf-8") as f:
                self.api_token = f.read().strip()
        self.exit_code = 0

    def make_restic(self) -> Restic:
        return Restic(
            repository=self.repository,
            repository_file=self.repository_file,
            password_file=self.password_file,
            binary=self.restic,
            timeout=self.volume_timeout,
        )

    async def with_lock_retry(self, restic: Restic, what: str, call: Any) -> Any:
        return await retry(
            call,
            attempts=self.lock_attempts,
            backoff=self.lock_backoff,
            retry_on=lambda e: isinstance(e, ResticError) and e.kind == "locked",
            log=self.log,
            what=what,
        )

    # -- which volumes -------------------------------------------------------------------
    def primary_vo(self, user: dict[str, Any]) -> str | None:
        groups = [g for g in user.get("groups") or [] if isinstance(g, str)]
        chosen = next((vo for vo in self.vo_priority if vo in groups), None)
        return chosen or (groups[0] if len(groups) == 1 else None)

    async def hub_users(self) -> dict[str, str | None] | None:
        """username -> primary VO; None when the hub is not asked or cannot be reached."""
        if not self.use_hub or not self.api_token:
            return None
        users: dict[str, str | None] = {}
        async with self.make_hub_client() as hub:
            async for user in hub.users():
                users[user["name"]] = self.primary_vo(user)
        return users

    def claim_dir(self, claim: str) -> str | None:
        name = self.claim_path_template.replace("{claim}", claim).replace(
            "{namespace}", self.namespace
        )
        found = sorted(p for p in glob.glob(os.path.join(glob.escape(self.mount_root), name)))
        found = [p for p in found if is_dir(p)] if "*" in name else found
        return found[0] if found else None

    async def volumes(self, restic: Restic) -> tuple[list[Volume], dict[str, Any]]:
        """The volumes of this run and what was learnt finding them (for the summary)."""
        notes: dict[str, Any] = {}
        mounted = mounted_claims(
            self.mount_root, self.claim_path_template, self.claim_name_template, self.namespace
        )
        try:
            hub_users = await self.hub_users()
        except HubAPIError as e:
            self.log.error("cannot list the hub's users (%s): backing up the mounted claims", e)
            notes["hub_error"] = str(e)
            hub_users = None
        known: dict[str, str] = {}
        previous = status_file.load(self.status_file) if self.status_file else {"volumes": {}}
        for claim, v in previous.get("volumes", {}).items():
            if v.get("user"):
                known[claim] = v["user"]
        selected, missing = select_volumes(
            mounted, hub_users or {}, known, dict(self.vo_claims), self.claim_name_template
        )
        if hub_users is None:
            notes["claims_unknown"] = "the hub's users are not known"
        elif not mounted:
            notes["claims_unknown"] = f"no claim under {self.mount_root}"
        else:
            notes["existing_claims"] = {
                *mounted,
                *(claim_name(u, self.claim_name_template) for u in hub_users),
                *self.vo_claims,
            }
        for claim, vo in sorted(self.vo_claims.items()):
            path = self.claim_dir(claim)
            if path:
                selected.append(Volume(claim, path, vo=vo, kind=VO))
            else:
                self.log.warning("VO claim %s (%s) not found under %s", claim, vo, self.mount_root)
        if missing:
            # a user who never started a server has no claim yet: not an error
            self.log.info("%d hub users have no claim under %s", len(missing), self.mount_root)
        return selected, notes

    # -- one volume ----------------------------------------------------------------------
    async def backup_volume(self, restic: Restic, volume: Volume) -> Outcome:
        if not is_dir(volume.path):
            return Outcome(volume, False, error="volume vanished before its backup", kind="source")

        async def backup() -> dict[str, Any]:
            try:
                return await restic.backup(
                    volume.path,
                    volume.tags(),
                    self.snapshot_host(volume),
                    seconds=self.volume_timeout,
                )
            except ResticError as e:
                # no repository yet: made on the first run (one restic call fewer per run
                # than asking first, and each call derives the key from the password)
                if not (self.init_repository and e.kind == "unreachable" and no_repository(e)):
                    raise
                await self.init_once(restic)
                return await restic.backup(
                    volume.path,
                    volume.tags(),
                    self.snapshot_host(volume),
                    seconds=self.volume_timeout,
                )

        try:
            summary = await self.with_lock_retry(
                restic,
                f"backup of {volume.claim}",
                backup,
            )
        except ResticError as e:
            if "snapshot is empty" in str(e) and is_dir(volume.path) and is_empty(volume.path):
                # a home nobody has written to yet: nothing to keep, nothing failed
                return Outcome(volume, True)
            vanished = not is_dir(volume.path)
            message = "volume vanished during its backup" if vanished else str(e)
            return Outcome(volume, False, error=message, kind="source" if vanished else e.kind)
        if not is_dir(volume.path):
            # restic may read an emptied tree without complaint: the snapshot is not a backup
            return Outcome(volume, False, error="volume vanished during its backup", kind="source")
        return Outcome(
            volume,
            True,
            snapshot=summary.get("snapshot_id"),
            bytes_added=int(summary.get("data_added") or 0),
        )

    async def init_once(self, restic: Restic) -> None:
        """Initialise the repository, once per run whatever the concurrency."""
        async with self._init_lock:
            if not self._init_tried:
                self._init_tried = True
                self.log.info("initialising the repository %s", restic.location)
                try:
                    await restic.init()
                except ResticError as e:
                    self._init_error = e
                    raise
            if self._init_error is not None:
                raise self._init_error

    def snapshot_host(self, volume: Volume) -> str:
        """The host of a volume's snapshots: one per claim, so restic finds each volume's
        parent snapshot wherever the volume is mounted, and one forget grouped by host keeps
        the policy per volume."""
        return f"{self.host}/{volume.claim}"

    def keep(self) -> dict[str, int]:
        return {
            "last": self.keep_last,
            "daily": self.keep_daily,
            "weekly": self.keep_weekly,
            "monthly": self.keep_monthly,
        }

    async def apply_retention(
        self, restic: Restic, notes: dict[str, Any] | None = None
    ) -> tuple[int, list[str]]:
        """One ``restic forget`` over this service's snapshots (kinds home and VO), grouped by
        host, which is one per claim: the policy applies to each volume on its own. Then the
        snapshots of claims gone longer than ``gone_claim_retention_days``, then one prune.
        (snapshots removed, errors)."""
        removed, errors = 0, []
        if any(self.keep().values()):
            try:
                forgotten = await self.with_lock_retry(
                    restic,
                    "forget",
                    lambda: restic.forget([tag("kind", HOME), tag("kind", VO)], self.keep()),
                )
            except ResticError as e:
                return 0, [f"forget: {e}"]
            removed = len(forgotten)
        try:
            removed += await self.forget_gone_claims(restic, notes or {})
        except ResticError as e:
            errors.append(f"forget gone claims: {e}")
        if removed and self.prune:
            try:
                await self.with_lock_retry(restic, "prune", restic.prune)
            except ResticError as e:
                errors.append(f"prune: {e}")
        return removed, errors

    async def forget_gone_claims(self, restic: Restic, notes: dict[str, Any]) -> int:
        """Forget the snapshots of the claims gone for over ``gone_claim_retention_days``
        (by their newest snapshot); how many were forgotten."""
        if self.gone_claim_retention_days <= 0:
            return 0
        existing = notes.get("existing_claims")
        if existing is None:
            reason = notes.get("claims_unknown", "the existing claims are not known")
            self.log.warning("not forgetting the snapshots of gone claims: %s", reason)
            return 0
        by_claim: dict[str, list[dict[str, Any]]] = {}
        for snapshot in await restic.snapshots():
            tags = tag_values(snapshot.get("tags"))
            if tags.get("kind") in (HOME, VO) and tags.get("claim"):
                by_claim.setdefault(tags["claim"], []).append(snapshot)
        cutoff = time.time() - self.gone_claim_retention_days * status_file.DAY
        expired = sorted(
            claim
            for claim, snapshots in by_claim.items()
            if claim not in existing
            and max(parse_time(s["time"]).timestamp() for s in snapshots) < cutoff
        )
        ids = [s["id"] for claim in expired for s in by_claim[claim]]
        if not ids:
            return 0
        await self.with_lock_retry(restic, "forget", lambda: restic.forget_ids(ids))
        self.log.info(
            "forgot %d snapshots of %d claims gone for over %g days: %s",
            len(ids), len(expired), self.gone_claim_retention_days, ", ".join(expired),
        )  # fmt: skip
        return len(ids)

    async def maybe_check(self, restic: Restic, data: dict[str, Any]) -> None:
        if self.check_interval_days <= 0:
            return
        last = (data.get("check") or {}).get("last") or 0
        if time.time() - last < self.check_interval_days * status_file.DAY:
            return
        try:
            await self.with_lock_retry(
                restic, "check", lambda: restic.check(self.check_read_data_subset)
            )
        except ResticError as e:
            self.log.error("restic check failed (%s): %s", e.kind, e)
            data["check"] = {"last": time.time(), "ok": False, "message": str(e)}
        else:
            self.log.info("restic check: repository OK")
            data["check"] = {"last": time.time(), "ok": True, "message": "ok"}

    # -- one run -------------------------------------------------------------------------
    async def run_once(self) -> int:
        """One run; 0 when every volume was backed up, 1 otherwise."""
        started = time.time()
        restic = self.make_restic()
        data = status_file.load(self.status_file) if self.status_file else {"volumes": {}}
        self.log.info("backup run to %s", restic.location)
        outcomes: list[Outcome] = []
        problems: list[str] = []
        self._init_lock = asyncio.Lock()
        self._init_tried = False
        self._init_error = None
        volumes, notes = await self.volumes(restic)
        if not self.mount_root or not is_dir(self.mount_root):
            problems.append(f"mount root {self.mount_root!r} is not a directory")
        if notes.get("hub_error"):
            problems.append(f"hub: {notes['hub_error']}")

        async def one(volume: Volume) -> Outcome:
            outcome = await self.backup_volume(restic, volume)
            if outcome.ok:
                self.log.info("backed up %s: snapshot %s, %d bytes added",
                              volume.describe(), outcome.snapshot, outcome.bytes_added)  # fmt: skip
            else:
                self.log.error("backup of %s failed (%s): %s",
                               volume.describe(), outcome.kind, outcome.error)  # fmt: skip
            return outcome

        results = await bounded_map(one, volumes, self.parallel, logger=self.log)
        for volume, result in zip(volumes, results, strict=True):
            if isinstance(result, BaseException):
                message = restic.redact(f"{type(result).__name__}: {result}")
                result = Outcome(volume, False, error=message, kind="error")
            outcomes.append(result)
        removed = 0
        if any(o.ok for o in outcomes):
            try:
                removed, errors = await self.apply_retention(restic, notes)
            except ResticError as e:
                errors = [f"retention: {e}"]
            problems += errors
            for error in errors:
                self.log.error("%s", error)
            await self.maybe_check(restic, data)
        finished = time.time()
        self.record(data, outcomes, started, finished, problems, restic.location)
        failed = [o for o in outcomes if not o.ok]
        self.log.info(
            "backup run finished in %.0f s: %d of %d volumes backed up, %d failed, "
            "%d snapshots forgotten%s",
            finished - started, len(outcomes) - len(failed), len(outcomes), len(failed),
            removed, "" if not problems else f"; problems: {'; '.join(problems)}",
        )  # fmt: skip
        for o in failed:
            self.log.error("FAILED %s: %s: %s", o.volume.describe(), o.kind, o.error)
        return 1 if failed or problems else 0

    def record(
        self,
        data: dict[str, Any],
        outcomes: list[Outcome],
        started: float,
        finished: float,
        problems: list[str],
        location: str,
    ) -> None:
        volumes = data.setdefault("volumes", {})
        for o in outcomes:
            entry = volumes.setdefault(o.volume.claim, {})
            entry.update(
                claim=o.volume.claim, user=o.volume.user or entry.get("user"),
                vo=o.volume.vo, kind=o.volume.kind, last_attempt=finished,
            )  # fmt: skip
            if o.ok:
                entry.update(last_success=finished, last_snapshot=o.snapshot,
                             bytes_added=o.bytes_added, last_error=None, last_error_kind=None,
                             consecutive_failures=0)  # fmt: skip
            else:
                entry.setdefault("last_success", None)
                failures = entry.get("consecutive_failures", 0) + 1
                entry.update(last_error=o.error, last_error_kind=o.kind,
                             consecutive_failures=failures)  # fmt: skip
        data.update(
            version=1,
            updated=finished,
            repository=location,
            last_run={
                "started": started,
                "finished": finished,
                "ok": sum(o.ok for o in outcomes),
                "failed": sum(not o.ok for o in outcomes),
                "failures": {
                    o.volume.claim: {"user": o.volume.user, "kind": o.kind, "message": o.error}
                    for o in outcomes
                    if not o.ok
                },
                "problems": problems,
                "host": socket.gethostname(),
            },
        )
        if self.status_file:
            status_file.save(self.status_file, data)

    # -- service -------------------------------------------------------------------------
    async def serve(self) -> None:
        await asyncio.sleep(max(0.0, self.first_run_delay))
        while True:
            started = time.monotonic()
            try:
                await self.run_once()
            except Exception:  # the service keeps its schedule whatever one run does
                self.log.exception("backup run crashed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        if self.interval > 0:
            asyncio.run(self.serve())
        else:
            self.exit_code = asyncio.run(self.run_once())
            if self.exit_code:
                raise SystemExit(self.exit_code)


__all__ = ["BackupApp", "HOME", "VO"]
