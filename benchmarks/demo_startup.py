"""Issue 7 figure: from a fresh clone, time from `egi-notebooks demo` to the hub answering.

The repository is cloned (its committed HEAD) into a temporary directory; set-up is excluded,
as the issue says: the clone reuses this repository's .venv and node_modules (PYTHONPATH
points every process at the clone's package, not the editable install). Each run starts the
demo with a fresh state dir on a free port, measures until ``GET /hub/api/`` answers 200 on
the public URL, then stops it with SIGINT (Ctrl-C). Prints each run, the median and spread.

    .venv/bin/python benchmarks/demo_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.harness.ports import free_port  # noqa: E402


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even if run with `&`


def fresh_clone(into: Path) -> Path:
    clone = into / "egi-notebooks"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    (clone / "node_modules").symlink_to(ROOT / "node_modules")  # set-up excluded
    return clone


def one_run(clone: Path, timeout: float = 120) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hub/api/"
    env = {**os.environ, "PYTHONPATH": str(clone)}
    command = [sys.executable, "-m", "egi_notebooks.cli", "demo", "--port", str(port)]
    command += ["--state-dir", str(clone / ".egi-notebooks-demo"), "--fresh"]
    log = open(clone / f"demo-{port}.out", "wb")  # noqa: SIM115 (closed below)
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_sigint_default,
    )
    try:
        with httpx.Client(timeout=1) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"demo exited ({proc.returncode}): see {log.name}")
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"no answer at {url} after {timeout:g} s")
                try:
                    if client.get(url).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egi-demo-bench-") as tmp:
        clone = fresh_clone(Path(tmp))
        print(f"fresh clone of {ROOT} at {clone}; .venv and node_modules reused (set-up excluded)")
        times = []
        for i in range(args.runs):
            t = one_run(clone)
            times.append(t)
            print(f"run {i + 1}: {t:.2f} s from `egi-notebooks demo` to the hub answering")
    median = statistics.median(times)
    spread = max(times) - min(times)
    print(f"demo start-up to hub answering: median {median:.2f} s over {len(times)} runs")
    print(f"runs: {', '.join(f'{t:.2f}' for t in times)} s; spread (max - min) {spread:.2f} s")
    print(f"ratio slowest/fastest: {max(times) / min(times):.2f}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")


if __name__ == "__main__":
    main()
