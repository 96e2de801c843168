"""``egi-notebooks backup [run | list USER | restore USER | check]``.

``run`` (the default) backs up every volume once, or as a service with ``--interval``;
``list`` shows a user's snapshots; ``restore`` restores one into a new folder of the user's
home (or an empty directory, or in place after confirmation); ``check`` is a Nagios plugin
reading the status file (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Every subcommand takes
the ``BackupApp`` options as ``--BackupApp.<trait>=<value>`` (or ``--config FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from .app import BackupApp
from .restic import ResticError
from .restore import RestoreError, choose, restore, user_snapshots
from .status import EXIT_CODES, UNKNOWN, evaluate, load

USAGE = """usage: egi-notebooks backup [run] [--BackupApp.<trait>=<value>...]
       egi-notebooks backup list USER [--claim CLAIM] [--json]
       egi-notebooks backup restore USER [--snapshot ID | --date YYYY-MM-DD] [--claim CLAIM]
                                         [--target DIR | --in-place [--yes]]
       egi-notebooks backup check [--warning-days N] [--critical-days N]"""


def _app(rest: list[str]) -> BackupApp:
    app = BackupApp()
    app.initialize(rest)
    return app


def _parser(name: str) -> argparse.ArgumentParser:
    from ..cli import HelpFormatter

    return argparse.ArgumentParser(
        prog=f"egi-notebooks backup {name}", formatter_class=HelpFormatter
    )


def top_help() -> str:
    """``egi-notebooks backup --help``: the commands, then the backup's main options."""
    from ..cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="egi-notebooks backup",
        usage="egi-notebooks backup [run | list | restore | check] [options]",
        description="restic backups of the users' home volumes, one snapshot per volume per "
        "run; restores that never overwrite.",
        formatter_class=HelpFormatter,
        epilog="Every command takes the BackupApp options as --BackupApp.<trait>=<value>; "
        "`egi-notebooks backup run --help-all` lists them all.",
    )
    commands = parser.add_argument_group("commands")
    for name, text in COMMAND_HELP.items():
        commands.add_argument(name, nargs="?", help=text)
    for alias, target in BackupApp.aliases.items():
        trait = BackupApp.class_traits().get(target.rpartition(".")[2])
        text = " ".join((trait.help if trait is not None else target).split())
        parser.add_argument(f"--{alias}", metavar="VALUE", help=text.replace("%", "%%"))
    return parser.format_help()


def cmd_list(argv: list[str]) -> int:
    parser = _parser("list")
    parser.add_argument("user")
    parser.add_argument("--claim", default="")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args, rest = parser.parse_known_args(argv)
    app = _app(rest)
    restic = app.make_restic()
    try:
        snapshots = asyncio.run(user_snapshots(restic, args.user, args.claim or None))
    except ResticError as e:
        print(f"cannot list snapshots ({e.kind}): {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([s.to_dict() for s in snapshots], ensure_ascii=False, indent=1))
        return 0
    if not snapshots:
        print(f"no snapshots of user {args.user!r}")
        return 0
    print(f"{'ID':<10} {'TIME (UTC)':<20} {'CLAIM':<30} VO")
    for s in snapshots:
        print(f"{s.short_id:<10} {s.time:%Y-%m-%d %H:%M:%S}  {s.claim or '':<30} {s.vo or ''}")
    return 0


def _confirm(user: str, home: str) -> bool:
    if not sys.stdin.isatty():
        return False
    print(f"This restores over the files in {home}: files changed since the snapshot are "
          f"overwritten.\nType the username ({user}) to go on: ", end="", flush=True)  # fmt: skip
    return sys.stdin.readline().strip() == user


def cmd_restore(argv: list[str]) -> int:
    parser = _parser("restore")
    parser.add_argument("user")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--snapshot", default="", help="snapshot id (or its first digits)")
    which.add_argument("--date", default="", help="the last snapshot on or before YYYY-MM-DD")
    parser.add_argument("--claim", default="", help="only snapshots of this claim")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--target", default="", help="an empty or new directory (a new claim)")
    where.add_argument(
        "--in-place", action="store_true", help="restore over the files in the home itself"
    )
    parser.add_argument("--yes", action="store_true", help="confirm --in-place")
    args, rest = parser.parse_known_args(argv)
    app = _app(rest)
    restic = app.make_restic()

    async def go() -> int:
        snapshot = choose(
            await user_snapshots(restic, args.user, args.claim or None), args.snapshot, args.date
        )
        home = app.claim_dir(snapshot.claim) if snapshot.claim else None
        if args.in_place and not (args.yes or _confirm(args.user, home or "?")):
            print("in-place restore not confirmed (give --yes, or type the username)",
                  file=sys.stderr)  # fmt: skip
            return 2
        started = time.monotonic()
        target = await restore(
            restic,
            snapshot,
            home,
            args.target,
            args.in_place,
            root=app.mount_root,
            staging_dir=app.restore_staging_dir,
        )
        app.log.info("restored snapshot %s (%s, claim %s) of user %r into %s in %.1f s",
                     snapshot.short_id, snapshot.time.isoformat(), snapshot.claim, args.user,
                     target, time.monotonic() - started)  # fmt: skip
        print(target)
        return 0

    try:
        return asyncio.run(go())
    except (RestoreError, ResticError) as e:
        print(f"restore of {args.user!r} refused or failed: {e}", file=sys.stderr)
        return 1


def cmd_check(argv: list[str]) -> int:
    parser = _parser("check")
    parser.add_argument("--warning-days", type=float, default=None)
    parser.add_argument("--critical-days", type=float, default=None)
    args, rest = parser.parse_known_args(argv)
    try:
        app = _app(rest)
        data = load(app.status_file)
    except Exception as e:  # Nagios needs a line and UNKNOWN, not a traceback
        print(f"BACKUP UNKNOWN - cannot read the backup status: {e}")
        return EXIT_CODES[UNKNOWN]
    warning = app.warning_days if args.warning_days is None else args.warning_days
    critical = app.critical_days if args.critical_days is None else args.critical_days
    state, message, rows = evaluate(data, warning, critical)
    oldest = max((r["age"] or 0 for r in rows if r["age"] is not None), default=0)
    never = sum(r["age"] is None for r in rows)
    failed = sum(bool(r.get("last_error")) for r in rows)
    print(
        f"BACKUP {state} - {message} | volumes={len(rows)} failed={failed} never={never} "
        f"oldest_age={oldest:.0f}s;{warning * 86400:.0f};{critical * 86400:.0f}"
    )
    return EXIT_CODES[state]


def cmd_run(argv: list[str]) -> int:
    try:
        BackupApp.launch_instance(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except KeyboardInterrupt:
        return 130
    return 0


COMMAND_HELP = {
    "run": "back up every volume once (the default; with --interval, as a service)",
    "list": "list USER's snapshots (`list --help`)",
    "restore": "restore one of USER's snapshots into a new folder (`restore --help`)",
    "check": "Nagios plugin reading the status file: exit 0 OK, 1 WARNING, 2 CRITICAL",
}

COMMANDS = {"run": cmd_run, "list": cmd_list, "restore": cmd_restore, "check": cmd_check}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in {"-h", "--help", "help"}:
        print(top_help(), end="")
        return 0
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    if argv and not argv[0].startswith("-"):
        print(f"egi-notebooks backup: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return cmd_run(argv)
