"""The ``egi-notebooks`` command: one subcommand per hub service or tool.

Subcommands are imported lazily so that ``egi-notebooks check-status`` (run by Nagios)
does not import JupyterHub or the accounting database layer.

Every subcommand's ``--help`` has one style (argparse's, with defaults): argparse-based
subcommands use :class:`HelpFormatter`; for the traitlets-based services (``app`` in the table)
this module renders the help from the application's aliases and flags (``--help-all`` still
prints traitlets' full list of configurable options).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NamedTuple

PROG = "egi-notebooks"
HELP_OPTIONS = {"-h", "--help"}


class Subcommand(NamedTuple):
    module: str
    function: str  # main(argv) -> exit status
    summary: str
    app: str = ""  # the traitlets Application class in `module`, if the subcommand is one


# subcommand -> where it lives; a new subcommand is one entry here
SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand(
        "egi_notebooks.demo.app", "main", "run a complete local EGI Notebooks on 127.0.0.1"
    ),
    "status": Subcommand(
        "egi_notebooks.services.status.app", "main", "hub-managed monitoring probe", "StatusApp"
    ),
    "check-status": Subcommand(
        "egi_notebooks.services.status.check",
        "main",
        "Nagios/ARGO plugin reading the status service",
    ),
    "accounting": Subcommand(
        "egi_notebooks.services.accounting.app",
        "main",
        "hub-managed accounting (APEL, EOSC); `accounting report`: usage as CSV or JSON",
        "AccountingApp",
    ),
    "tokens": Subcommand(
        "egi_notebooks.services.tokens.app",
        "main",
        "fresh access tokens for notebooks",
        "TokensApp",
    ),
    "migrate-claims": Subcommand(
        "egi_notebooks.spawner.migrate",
        "main",
        "label the older egi-notebooks-hub claims for EGISpawner",
    ),
    "migrate-users": Subcommand(
        "egi_notebooks.migrate_users",
        "main",
        "rename egi-notebooks-hub 1.0 users to their voperson_id (dry run unless --apply)",
    ),
    "backup": Subcommand(
        "egi_notebooks.backup.cli",
        "main",
        "restic backups of the home volumes: run, list, restore, check (Nagios)",
    ),
}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("egi-notebooks")
    except Exception:  # not installed as a distribution (a bare checkout on sys.path)
        from . import __version__

        return __version__


def usage() -> str:
    lines = [f"usage: {PROG} [-h] [--version] <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<15} {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    lines += ["", f"`{PROG} <subcommand> --help` describes each one."]
    return "\n".join(lines)


# -- help of the traitlets-based subcommands -------------------------------------------------
def _trait_of(app: Any, target: str) -> Any:
    """The trait named by an alias target ``Class.trait`` (None if it cannot be found)."""
    class_name, _, trait_name = target.rpartition(".")
    for cls in app._classes_inc_parents():
        if cls.__name__ == class_name and trait_name in cls.class_traits():
            return cls.class_traits()[trait_name]
    return None


def _default_text(app: Any, target: str, trait: Any) -> str:
    """The default a user gets: the app's own (dynamic defaults included) for its traits."""
    class_name, _, trait_name = target.rpartition(".")
    try:
        if class_name in {type(app).__name__, "Application"} and trait_name in app.traits():
            value = getattr(app, trait_name)
        else:
            value = trait.default()
    except Exception:  # a default that needs configuration
        return ""
    if trait_name == "log_level" and isinstance(value, int):
        import logging

        value = logging.getLevelName(value)
    return "" if value in ("", None) else str(value)


METAVARS = {"Unicode": "TEXT", "Float": "NUMBER", "Integer": "N", "Int": "N", "Enum": "LEVEL"}


def traitlets_help(app_class: type, prog: str) -> str:
    """argparse-style help of a traitlets Application: its aliases, flags and subcommands."""
    app = app_class()
    description = (app.description or "").strip()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
        epilog="--help-all lists every configurable option (as --Class.trait=value).",
    )
    subcommands = getattr(app, "subcommands", None) or {}
    if subcommands:
        group = parser.add_argument_group("subcommands")
        for name, (_, text) in subcommands.items():
            group.add_argument(name, nargs="?", help=f"{text.strip()} (`{prog} {name} --help`)")
    for names, target in app.aliases.items():
        if isinstance(target, tuple):
            target = target[0]
        trait = _trait_of(app, target)
        if trait is None:
            continue
        options = [names] if isinstance(names, str) else list(names)
        options = [("-" if len(o) == 1 else "--") + o for o in options]
        default = _default_text(app, target, trait)
        text = " ".join((trait.help or "").split()).replace("%", "%%")
        metavar = METAVARS.get(type(trait).__name__, "VALUE")
        parser.add_argument(*options, metavar=metavar, default=default or None, help=text or target)
    for names, value in app.flags.items():
        text = value[1] if isinstance(value, tuple) else ""
        if names in {"debug", "show-config", "show-config-json"}:
            continue  # traitlets' own, listed by --help-all
        options = [names] if isinstance(names, str) else list(names)
        options = [("-" if len(o) == 1 else "--") + o for o in options]
        parser.add_argument(*options, action="store_true", help=" ".join(text.split()))
    return parser.format_help()


def subcommand_help(sub: Subcommand, name: str, rest: list[str], module: Any) -> str | None:
    """The help a traitlets-based subcommand's ``--help`` prints, None for argparse ones."""
    if not sub.app:
        return None
    app_class, prog = getattr(module, sub.app), f"{PROG} {name}"
    subcommands = app_class().subcommands or {}
    if rest and rest[0] in subcommands:
        target = subcommands[rest[0]][0]
        if isinstance(target, str):
            module_name, _, attr = target.rpartition(".")
            target = getattr(importlib.import_module(module_name), attr)
        app_class, prog = target, f"{prog} {rest[0]}"
    return traitlets_help(app_class, prog)


def main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in HELP_OPTIONS or argv[0] == "help":
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"{PROG} {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"{PROG}: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    sub = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(sub.module)
    except ImportError as e:
        print(f"{PROG} {name}: not available ({e})", file=sys.stderr)
        return 2
    if HELP_OPTIONS & set(rest[:2]):
        text = subcommand_help(sub, name, rest, module)
        if text is not None:
            print(text, end="")
            return 0
    return getattr(module, sub.function)(rest)


if __name__ == "__main__":
    sys.exit(main())
