"""Figure: probe overhead = total run time minus spawn time, median over N runs.

A real hub (with configurable-http-proxy, EGICheckinAuthenticator against the local OIDC
provider) runs the status service as a managed service added with ``add_status_service``; the
probe user's server is a local jupyterhub-singleuser (jupyter-server + JupyterLab + ipykernel).
Each run is started with an admin's POST (``run?wait=1``) and its phase timings are read from
the result. Target: median overhead under 2 s on this machine.

    .venv/bin/python benchmarks/status_overhead.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egi_notebooks.services.status import DEFAULT_PROBE_USER  # noqa: E402
from tests.harness.egi_hub import EGIHub  # noqa: E402
from tests.harness.hub import LOCAL_SPAWNER_CONFIG, HubProcess, free_port  # noqa: E402

TARGET = 2.0
USER = DEFAULT_PROBE_USER


LIGHT = (
    "--ServerApp.jpserver_extensions={'jupyterlab': False, 'jupyter_lsp': False, "
    "'jupyter_server_terminals': False, 'notebook_shim': False}"
)


def config(workdir: Path, hub: HubProcess, light: bool = False, hub_stop_only: bool = False) -> str:
    args = [
        "--StatusApp.first_run_delay=-1",
        f"--StatusApp.history_file={workdir / 'status.json'}",
    ]
    if hub_stop_only:
        args.append("--StatusApp.shutdown_via_server=False")
    # the documented helper: the service with its least-privilege role
    return (
        LOCAL_SPAWNER_CONFIG
        + f"""
from egi_notebooks.hubconfig import add_status_service
c.JupyterHub.log_level = "INFO"
add_status_service(c, url="http://127.0.0.1:{free_port()}", proxy_url={hub.url!r},
                   probe_user={USER!r}, args={args!r})
"""
        + (f"c.Spawner.args.append({LIGHT!r})\n" if light else "")
    )


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"min {min(values):.2f} s, IQR {q[0]:.2f}-{q[2]:.2f} s, max {max(values):.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--light",
        action="store_true",
        help="single-user servers without the JupyterLab/LSP/terminal "
        "extensions (a lighter process)",
    )
    parser.add_argument(
        "--hub-stop-only",
        action="store_true",
        help="no server-side /api/shutdown before the hub's stop "
        "(StatusApp.shutdown_via_server=False), for comparison",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="status-bench-") as tmp:
        workdir = Path(tmp)
        # the production authenticator (the probe user never signs in: it makes no
        # difference to the runs, but the hub is the one the service runs in)
        egi = EGIHub(workdir / "hub")
        hub = egi.hub
        egi.hub_config = config(workdir, hub, args.light, args.hub_stop_only)
        egi.start()
        try:
            url = f"{hub.url}/services/status/"
            for _ in range(100):  # the service starts after the hub answers
                try:
                    if httpx.get(url + "status.json", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            totals, spawns, overheads = [], [], []
            per_phase: dict[str, list[float]] = {}
            for i in range(args.runs):
                r = httpx.post(url + "run?wait=1", headers=hub.api_headers(), timeout=300)
                result = r.json()["result"]
                if result["status"] not in ("OK", "WARNING"):
                    print(f"run {i}: {result['status']} {result['message']}", file=sys.stderr)
                    return 1
                phases = result["phases"]
                total, spawn = result["duration"], phases["spawn"]
                totals.append(total)
                spawns.append(spawn)
                overheads.append(total - spawn)
                for name, took in phases.items():
                    per_phase.setdefault(name, []).append(took)
                print(
                    f"run {i + 1}: total {total:.2f} s, spawn {spawn:.2f} s, "
                    f"overhead {total - spawn:.2f} s  "
                    + " ".join(f"{k}={v:.2f}" for k, v in phases.items())
                )
        finally:
            egi.stop()
    median = statistics.median(overheads)
    print()
    print(
        "phase medians: "
        + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in per_phase.items())
    )
    print(f"total run: median {statistics.median(totals):.2f} s ({spread(totals)})")
    print(f"spawn:     median {statistics.median(spawns):.2f} s ({spread(spawns)})")
    kind = "light servers (no lab extensions)" if args.light else "full JupyterLab servers"
    print(
        f"single-user servers: {kind}; stop: "
        + ("hub only" if args.hub_stop_only else "server /api/shutdown, then the hub")
    )
    print(
        f"FIGURE probe overhead (total - spawn), median of {len(overheads)} runs: "
        f"{median:.2f} s ({spread(overheads)})"
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1/5/15 min) at the end: {load} on {os.cpu_count()} cores")
    print(
        f"ratio to the 2 s target: {median / TARGET:.2f} "
        f"({'met' if median < TARGET else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
