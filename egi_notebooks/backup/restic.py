"""Async calls to the ``restic`` command.

The repository password reaches restic only as ``RESTIC_PASSWORD_FILE`` or ``RESTIC_PASSWORD``
in its environment, never on its command line; the repository location as
``RESTIC_REPOSITORY`` or ``RESTIC_REPOSITORY_FILE``. Everything restic prints that this module
logs or raises goes through :meth:`Restic.redact` first: a ``user:password@`` in a URL and
the values of the credentials it knows of are replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: environment variables restic reads for its backends (S3, rest-server, ...), passed through
#: when set; the ones whose values are secrets are redacted from anything logged
PASSTHROUGH_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "RESTIC_REST_USERNAME",
    "RESTIC_REST_PASSWORD",
    "RESTIC_CACERT",
    "RESTIC_CACHE_DIR",
    "RESTIC_COMPRESSION",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "HOME",
    "PATH",
    "TMPDIR",
)
SECRET_ENV = (
    "RESTIC_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RESTIC_REST_PASSWORD",
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/@\s]*@")

# restic exit status 3: the snapshot was written, but some files could not be read
INCOMPLETE = 3


class ResticError(Exception):
    """restic failed; ``kind`` says how (for summaries and metrics):

    ``locked`` another process holds an exclusive lock on the repository,
    ``unreachable`` the repository cannot be opened (network, missing, wrong password),
    ``full`` the repository's storage has no space left,
    ``source`` what was to be backed up is missing or could not be read,
    ``timeout`` restic did not finish in time, ``error`` anything else.
    """

    def __init__(self, kind: str, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.returncode = returncode


def classify(stderr: str) -> str:
    """The :class:`ResticError` kind of a failure from what restic printed."""
    text = stderr.lower()
    if "already locked" in text or "unable to create lock" in text:
        return "locked"
    if "no space left" in text or "quota exceeded" in text or "entitytoolarge" in text:
        return "full"
    if (
        "unable to open config file" in text
        or "unable to open repository" in text
        or "connection refused" in text
        or "no such host" in text
        or "wrong password" in text
        or "is there a repository at the following location" in text
        or "i/o timeout" in text
        or "dial tcp" in text
    ):
        return "unreachable"
    if "not exist" in text or "no such file or directory" in text:
        return "source"
    return "error"


@dataclass
class Restic:
    """One repository: where it is and how restic opens it."""

    repository: str = ""
    repository_file: str = ""
    password_file: str = ""
    binary: str = "restic"
    timeout: float = 6 * 3600
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: also pass RESTIC_PASSWORD from this process's environment (no password file)
    env_password: bool = True

    def environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        if self.repository:
            env["RESTIC_REPOSITORY"] = self.repository
        elif self.repository_file:
            env["RESTIC_REPOSITORY_FILE"] = self.repository_file
        elif "RESTIC_REPOSITORY" in os.environ:
            env["RESTIC_REPOSITORY"] = os.environ["RESTIC_REPOSITORY"]
        elif "RESTIC_REPOSITORY_FILE" in os.environ:
            env["RESTIC_REPOSITORY_FILE"] = os.environ["RESTIC_REPOSITORY_FILE"]
        if self.password_file:
            env["RESTIC_PASSWORD_FILE"] = self.password_file
        elif "RESTIC_PASSWORD_FILE" in os.environ:
            env["RESTIC_PASSWORD_FILE"] = os.environ["RESTIC_PASSWORD_FILE"]
        elif self.env_password and "RESTIC_PASSWORD" in os.environ:
            env["RESTIC_PASSWORD"] = os.environ["RESTIC_PASSWORD"]
        env.update(self.extra_env)
        return env

    def secrets(self) -> list[str]:
        """Values that must never be logged: the password and the backends' secrets."""
        env = self.environment()
        values = [env[k] for k in SECRET_ENV if env.get(k)]
        path = env.get("RESTIC_PASSWORD_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    password = f.read().strip()
                if password:
                    values.append(password)
            except OSError:
                pass
        return sorted((v for v in values if len(v) >= 3), key=len, reverse=True)

    def redact(self, text: str) -> str:
        text = _URL_USERINFO.sub(r"\g<scheme>\g<user>:***@", text)
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    @property
    def location(self) -> str:
        """The repository for log lines, without credentials."""
        env = self.environment()
        where = env.get("RESTIC_REPOSITORY") or f"file {env.get('RESTIC_REPOSITORY_FILE', '?')}"
        return self.redact(where)

    async def run(
        self,
        args: Sequence[str],
        cwd: str | None = None,
        seconds: float | None = None,
    ) -> tuple[str, str]:
        """Run ``restic ARGS``; (stdout, stderr), or :class:`ResticError` on failure."""
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                cwd=cwd,
                env=self.environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as e:
            raise ResticError("error", f"cannot run {self.binary}: {e.strerror}") from None
        except OSError as e:  # the working directory vanished, say
            raise ResticError("source", f"cannot run {self.binary}: {e}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), seconds or self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ResticError("timeout", f"restic {args[0]} did not finish in time") from None
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
            raise
        stdout = out.decode("utf-8", "replace")
        stderr = self.redact(err.decode("utf-8", "replace"))
        if process.returncode == INCOMPLETE and args and args[0] == "backup":
            raise ResticError(
                "source",
                f"snapshot incomplete, some files could not be read: {_tail(stderr)}",
                process.returncode,
            )
        if process.returncode != 0:
            raise ResticError(classify(stderr), _tail(stderr), process.returncode)
        return stdout, stderr

    async def json(self, args: Sequence[str], **kwargs: Any) -> Any:
        stdout, _ = await self.run([*args, "--json"], **kwargs)
        return json.loads(stdout or "null")

    # -- commands ------------------------------------------------------------------------
    async def is_initialized(self) -> bool:
        try:
            await self.run(["cat", "config"], seconds=120)
        except ResticError as e:
            if (
                "unable to open config file" in str(e).lower()
                or "is there a repository" in str(e).lower()
            ):
                return False
            raise
        return True

    async def init(self) -> None:
        await self.run(["init"], seconds=300)

    async def backup(
        self, path: str, tags: Sequence[str], host: str, seconds: float | None = None
    ) -> dict[str, Any]:
        """Back up the directory ``path`` (its content at the root of the snapshot); the
        summary restic prints (``snapshot_id``, ``data_added``...)."""
        args = ["backup", "--json", "--host", host]
        for tag in tags:
            args += ["--tag", tag]
        stdout, _ = await self.run([*args, "."], cwd=path, seconds=seconds)
        summary: dict[str, Any] = {}
        for line in stdout.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("message_type") == "summary":
                summary = message
        if not summary.get("snapshot_id"):
            raise ResticError("error", "restic backup printed no snapshot id")
        return summary

    async def snapshots(self, tags: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Snapshots having every tag of ``tags``, oldest first."""
        args = ["snapshots"]
        if tags:
            args += ["--tag", ",".join(tags)]
        return list(await self.json(args, seconds=600) or [])

    async def forget(
        self, any_tags: Sequence[str], keep: Mapping[str, int], group_by: str = "host"
    ) -> list[dict[str, Any]]:
        """Apply ``keep`` (``daily``: 7, ...) to each group (``group_by``) of the snapshots
        having any of ``any_tags``; the snapshots removed."""
        args = ["forget", "--group-by", group_by]
        for t in any_tags:
            args += ["--tag", t]
        for name, count in keep.items():
            if count > 0:
                args += [f"--keep-{name}", str(count)]
        groups = await self.json(args, seconds=3600) or []
        return [s for g in groups for s in (g.get("remove") or [])]

    async def forget_ids(self, snapshot_ids: Sequence[str]) -> None:
        """Forget these snapshots, whatever the policy."""
        await self.run(["forget", *snapshot_ids], seconds=3600)

    async def prune(self) -> None:
        await self.run(["prune"], seconds=6 * 3600)

    async def check(self, read_data_subset: str = "") -> None:
        args = ["check"]
        if read_data_subset:
            args.append(f"--read-data-subset={read_data_subset}")
        await self.run(args, seconds=6 * 3600)

    async def restore(self, snapshot_id: str, target: str) -> None:
        await self.run(["restore", snapshot_id, "--target", target], seconds=None)

    async def unlock(self) -> None:
        """Remove stale locks only (restic never removes a live process's lock here)."""
        await self.run(["unlock"], seconds=300)


def _tail(stderr: str, lines: int = 5) -> str:
    kept = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no message"
