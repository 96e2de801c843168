"""Median latency of an authenticated ``GET /hub/api/user``: EGI vs GenericOAuthenticator.

Issue 2 figure: egi / generic at most 1.05. Both hubs run at once; requests alternate
between them (egi, generic, egi, ...) so that machine noise hits both alike. Tokens are
valid and ``auth_refresh_age`` is the upstream default, so this measures the per-request
overhead of the authenticator, not the provider.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from _auth_hubs import Setup, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per hub")
    parser.add_argument("--users", type=int, default=5)
    args = parser.parse_args()
    setup = Setup(args.users).start()
    samples: dict[str, list[float]] = {kind: [] for kind in setup.KINDS}
    try:
        for kind in setup.KINDS:
            setup.login_all(kind)
        with httpx.Client(timeout=30) as client:
            for i in range(args.requests + 50):
                for kind in setup.KINDS:
                    token = setup.tokens[kind][i % args.users]
                    url = f"{setup.hubs[kind].hub_api_url}/user"
                    started = time.perf_counter()
                    r = client.get(url, headers={"Authorization": f"token {token}"})
                    elapsed = (time.perf_counter() - started) * 1000
                    r.raise_for_status()
                    if i >= 50:  # warm-up excluded
                        samples[kind].append(elapsed)
    finally:
        setup.stop()
    for kind in setup.KINDS:
        print(f"{kind:8} GET /hub/api/user ms: {spread(samples[kind])}")
    ratio = statistics.median(samples["egi"]) / statistics.median(samples["generic"])
    print(f"ratio egi/generic (medians): {ratio:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
