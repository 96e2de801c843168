#!/usr/bin/env python3
"""Known advisories of pinned dependencies: pip-audit over pins files and virtual environments.

``./run test``'s audit stage runs it on the hub image's pins (``docker/hub/constraints.txt``)
and on both test venvs:

    audit_dependencies.py TARGET... [-- PIP_AUDIT_ARGUMENT...]

A TARGET is a pins file (``name==version`` lines, audited as pinned: no resolution) or a
virtual environment's directory (audited with its own Python, which needs pip-audit installed
there, as the ``test`` extra does; editable installs, this package among them, are skipped).
The vulnerability data comes from the package index's JSON API (pip-audit's default ``pypi``
service): nothing but the package registry is needed. Arguments after ``--`` go to every
pip-audit run (``-s osv --osv-url URL`` for another service).

It prints each advisory found (package, version, ID and aliases, fixed releases) and one
summary line per target; the exit status is 1 if any target has an advisory or could not be
audited at all (pip-audit failed). A package the service has no data for is counted and named
in the summary, not failed: not every index serves vulnerability data for every release.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: Advisory ID -> why it is ignored. Only for an advisory without a fixed release that the
#: package can use; every other advisory is fixed by moving the pin.
IGNORED: dict[str, str] = {}

TIMEOUT = 900  # one target; pip-audit asks the index once per package


def pip_audit_command(target: Path, extra: list[str]) -> list[str]:
    common = ["--format", "json", "--progress-spinner", "off", "--desc", "off"]
    common += [arg for vuln in sorted(IGNORED) for arg in ("--ignore-vuln", vuln)]
    if target.is_dir():
        python = target / "bin" / "python"
        return [str(python), "-m", "pip_audit", "--local", "--skip-editable", *common, *extra]
    # a pins file: every line pinned, so no resolution (no venv is built for it)
    return [sys.executable, "-m", "pip_audit", "--requirement", str(target), "--no-deps",
            "--disable-pip", *common, *extra]  # fmt: skip


def audit(target: Path, extra: list[str]) -> bool:
    """Print what pip-audit found for one target; whether it was audited and is clean."""
    try:
        result = subprocess.run(
            pip_audit_command(target, extra), capture_output=True, text=True, timeout=TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"audit {target}: pip-audit did not run: {e}")
        return False
    try:
        dependencies = json.loads(result.stdout)["dependencies"]
    except (ValueError, KeyError, TypeError):
        print(f"audit {target}: pip-audit failed (exit {result.returncode}):")
        print(result.stderr.strip()[-3000:])
        return False
    advisories = 0
    skipped: dict[str, str] = {}
    for dep in dependencies:
        if "skip_reason" in dep:
            skipped[dep["name"]] = dep["skip_reason"]
            continue
        for vuln in dep.get("vulns") or []:
            advisories += 1
            aliases = ", ".join(vuln.get("aliases") or [])
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
            print(f"  {dep['name']}=={dep['version']}: {vuln['id']}"
                  f"{f' ({aliases})' if aliases else ''}; fixed in: {fixed}")  # fmt: skip
    audited = len(dependencies) - len(skipped)
    print(f"audit {target}: {advisories} known advisories in {audited} audited packages")
    if skipped and not audited:
        # said once, loudly: an index that serves no per-release JSON leaves everything out
        print(f"audit {target}: NOT AUDITED: none of its {len(skipped)} packages had "
              f"vulnerability data from the service ({next(iter(skipped.values()))})")  # fmt: skip
    elif skipped:
        print(f"audit {target}: not audited (no vulnerability data): {' '.join(sorted(skipped))}")
    if advisories == 0 and result.returncode != 0:
        print(f"audit {target}: pip-audit failed (exit {result.returncode}):")
        print(result.stderr.strip()[-3000:])
        return False
    return advisories == 0


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if not argv or any(a.startswith("-") for a in argv):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    missing = [a for a in argv if not Path(a).exists()]
    if missing:
        print(f"audit: no such pins file or venv: {' '.join(missing)}", file=sys.stderr)
        return 2
    results = [audit(Path(target), extra) for target in argv]  # every target, even after one fails
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
