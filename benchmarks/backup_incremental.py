"""Figure: incremental backup of 10,000 unchanged files with ``egi-notebooks backup``,
beside a plain ``restic backup`` of the same tree; and restore throughput.

Two local repositories, one per tool, each first given a full backup (not timed). Then, for
each of ``--runs`` rounds, both back up the unchanged tree (alternating which goes first, so
neither always gets the warmer page cache): wall time and bytes added (restic's
``data_added``). ``egi-notebooks backup`` is timed twice: the backup alone (retention and
check off) and the whole run as configured by default (plus one ``restic forget``, and
``restic prune`` when something was forgotten). Target: backup-alone median at most 1.1 times
the plain restic median. Restore: ``egi-notebooks backup restore`` into a new folder vs
``restic restore``, MB/s of the tree's bytes.

    .venv/bin/python benchmarks/backup_incremental.py [--runs 5] [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.1


def make_tree(home: Path, files: int, large_mb: int) -> int:
    """``files`` small files (1-4 KiB, 100 per directory) and one large file; total bytes."""
    total = 0
    for i in range(files):
        d = home / f"dir-{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        data = (f"{i:08d}".encode() * 512)[: 1024 + (i * 37) % 3072]
        (d / f"file-{i:05d}.txt").write_bytes(data)
        total += len(data)
    big = os.urandom(1024 * 1024) * large_mb
    (home / "large.bin").write_bytes(big)
    return total + len(big)


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed: {result.stderr[-2000:]}")
    return took, result.stdout


def summary_of(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if '"message_type":"summary"' in line:
            return json.loads(line)
    return {}


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f}, min {min(values):.2f}, "
            f"max {max(values):.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--large-mb", type=int, default=64)
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    restic = shutil.which("restic")
    if not restic:
        raise SystemExit("restic is not installed (apt-get install restic)")

    work = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    try:
        homes = work / "homes"
        home = homes / "claim-bench"
        tree_bytes = make_tree(home, args.files, args.large_mb)
        password = work / "password"
        password.write_text("benchmark-password\n")
        ours_repo, plain_repo = work / "repo-ours", work / "repo-plain"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        plain_env = {**base_env, "RESTIC_REPOSITORY": str(plain_repo),
                     "RESTIC_PASSWORD_FILE": str(password),
                     "RESTIC_CACHE_DIR": str(work / "cache-plain")}  # fmt: skip
        ours_env = {**base_env, "RESTIC_CACHE_DIR": str(work / "cache-ours")}
        common = [f"--BackupApp.repository={ours_repo}", f"--BackupApp.password_file={password}",
                  f"--BackupApp.mount_root={homes}", f"--BackupApp.restic={restic}"]  # fmt: skip
        ours = [sys.executable, "-m", "egi_notebooks.cli", "backup", *common]
        alone = [*ours, f"--BackupApp.status_file={work / 'status-alone.json'}",
                 "--BackupApp.keep_daily=0", "--BackupApp.keep_weekly=0",
                 "--BackupApp.keep_monthly=0", "--BackupApp.check_interval_days=0"]  # fmt: skip
        whole = [*ours, f"--BackupApp.status_file={work / 'status.json'}"]
        plain = [restic, "backup", "--json", "--host", "egi-notebooks", "."]

        subprocess.run([restic, "init"], env=plain_env, check=True, capture_output=True)
        first_ours, _ = timed(alone, ours_env)
        first_plain, _ = timed(plain, plain_env, cwd=home)
        print(f"tree: {args.files} files + {args.large_mb} MiB, {tree_bytes / 1e6:.1f} MB")
        print(f"first (full) backup: ours {first_ours:.2f} s, plain restic {first_plain:.2f} s")

        t_alone, t_whole, t_plain, added_ours, added_plain = [], [], [], [], []
        for run in range(args.runs):
            order = ["alone", "plain", "whole"] if run % 2 == 0 else ["plain", "whole", "alone"]
            for which in order:
                if which == "plain":
                    took, out = timed(plain, plain_env, cwd=home)
                    t_plain.append(took)
                    added_plain.append(summary_of(out).get("data_added", 0))
                elif which == "alone":
                    took, _ = timed(alone, ours_env)
                    t_alone.append(took)
                    status = json.loads((work / "status-alone.json").read_text())
                    added_ours.append(status["volumes"]["claim-bench"]["bytes_added"])
                else:
                    took, _ = timed(whole, ours_env)
                    t_whole.append(took)
        ratio = statistics.median(t_alone) / statistics.median(t_plain)
        ratio_whole = statistics.median(t_whole) / statistics.median(t_plain)
        # the fastest runs are the least disturbed by other load on a shared machine
        ratio_min = min(t_alone) / min(t_plain)

        # restore: ours into a new folder of the home, plain restic into an empty directory
        r_ours, r_plain = [], []
        for _ in range(max(1, args.runs // 2)):
            took, out = timed([*ours[:4], "restore", "bench", "--claim", "claim-bench",
                               *common], ours_env)  # fmt: skip
            r_ours.append(tree_bytes / took / 1e6)
            shutil.rmtree(out.strip().splitlines()[-1])
            target = work / "plain-restore"
            took, _ = timed([restic, "restore", "latest", "--target", str(target)], plain_env)
            r_plain.append(tree_bytes / took / 1e6)
            shutil.rmtree(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nincremental backup of the unchanged tree, {args.runs} runs (seconds):")
    print(f"  plain restic backup            {spread(t_plain)}")
    print(f"  egi-notebooks backup (alone)   {spread(t_alone)}   ratio {ratio:.2f} "
          f"(target <= {TARGET_RATIO}; fastest runs: {ratio_min:.2f})")  # fmt: skip
    print(f"  egi-notebooks backup (default) {spread(t_whole)}   ratio {ratio_whole:.2f} "
          "(+ retention)")  # fmt: skip
    print(f"  bytes added: ours median {statistics.median(added_ours):.0f}, "
          f"plain median {statistics.median(added_plain):.0f}")  # fmt: skip
    print(f"restore throughput (MB/s): ours {spread(r_ours)}; plain restic {spread(r_plain)}")
    figures = {
        "files": args.files, "tree_bytes": tree_bytes, "runs": args.runs,
        "plain_s": t_plain, "ours_alone_s": t_alone, "ours_default_s": t_whole,
        "ratio": ratio, "ratio_fastest": ratio_min, "ratio_default": ratio_whole,
        "bytes_added_ours": added_ours, "bytes_added_plain": added_plain,
        "restore_mb_s_ours": r_ours, "restore_mb_s_plain": r_plain,
    }  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
