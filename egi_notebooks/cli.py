"""The ``egi-notebooks`` command: one subcommand per hub service or tool.

Subcommands are imported lazily so that ``egi-notebooks check-status`` (run by Nagios)
does not import JupyterHub or the accounting database layer.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("egi_notebooks.demo.app", "main", "run a complete local EGI Notebooks on 127.0.0.1"),
    "status": ("egi_notebooks.services.status.app", "main", "hub-managed monitoring probe"),
    "check-status": (
        "egi_notebooks.services.status.check",
        "main",
        "Nagios/ARGO plugin reading the status service",
    ),
    "accounting": (
        "egi_notebooks.services.accounting.app",
        "main",
        "hub-managed accounting (APEL, EOSC)",
    ),
    "tokens": ("egi_notebooks.services.tokens.app", "main", "fresh access tokens for notebooks"),
    "migrate-claims": (
        "egi_notebooks.spawner.migrate",
        "main",
        "label the older egi-notebooks-hub claims for EGISpawner",
    ),
    "migrate-users": (
        "egi_notebooks.migrate_users",
        "main",
        "rename egi-notebooks-hub 1.0 users to their voperson_id (dry run unless --apply)",
    ),
}


def usage() -> str:
    lines = ["usage: egi-notebooks <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"egi-notebooks: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"egi-notebooks {name}: not available ({e})", file=sys.stderr)
        return 2
    return getattr(module, func_name)(rest)


if __name__ == "__main__":
    sys.exit(main())
