"""Run the Kubernetes API emulator (and its kubelet) as its own process.

    python -m tests.harness.k8s --kubeconfig PATH [--port N] [--run-processes] [--root DIR]

Writes the kubeconfig once it listens, prints ``READY <url>`` on stdout, and serves until
SIGTERM/SIGINT. A hub started with KUBECONFIG=PATH then talks to it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from . import running_emulator, write_kubeconfig


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_emulator(
        port=args.port, run_processes=args.run_processes, root=args.root
    ) as cluster:
        write_kubeconfig(cluster.url, args.kubeconfig)
        print(f"READY {cluster.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.k8s")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--run-processes", action="store_true")
    parser.add_argument("--root", default=None, help="where claims/secret volumes live")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
