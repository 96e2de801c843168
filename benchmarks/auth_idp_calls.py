"""Identity-provider calls per active user per hour: EGI authenticator vs GenericOAuthenticator.

Issue 2 figure: at most 1.1 x (3600 / access-token lifetime) for EGICheckinAuthenticator,
against 12 userinfo calls per hour for upstream GenericOAuthenticator at its defaults.

Time is compressed by ``--speed`` (default 60: one real minute is one simulated hour):
the access-token lifetime (3600 s), ``auth_refresh_age`` (300 s, upstream default) and the
refresh leeway (600 s) are all divided by it. Every user makes an authenticated API request
every simulated minute, so every user is active all the time. Both hubs run at once against
the same provider; calls are counted by the provider per client.

It runs on both local providers (``--providers``): ours, and the certified one configured as EGI
Check-in, where entitlements come only in userinfo (never in the id_token), so the hub asks
userinfo at every refresh; one figure per provider.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from _auth_hubs import Setup

PROVIDERS = ("ours", "certified")


async def drive(setup: Setup, seconds: float, period: float) -> int:
    """Every user of both hubs makes one request per ``period`` for ``seconds``."""
    failures = 0
    async with httpx.AsyncClient(timeout=30) as client:

        async def user_loop(url: str, token: str) -> None:
            nonlocal failures
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                r = await client.get(url, headers={"Authorization": f"token {token}"})
                failures += r.status_code != 200
                await asyncio.sleep(period)

        loops = [
            user_loop(f"{setup.hubs[kind].hub_api_url}/user", token)
            for kind in ("egi", "generic")
            for token in setup.tokens[kind]
        ]
        await asyncio.gather(*loops)
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours to measure")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    parser.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help=f"comma-separated local providers to measure on ({', '.join(PROVIDERS)})",
    )
    args = parser.parse_args()
    lifetime = 3600 / args.speed
    extra = f"""
c.Authenticator.auth_refresh_age = {300 / args.speed}
c.EGICheckinAuthenticator.refresh_leeway = {int(max(1, 600 / args.speed))}
"""
    figures = {}
    for implementation in args.providers.split(","):
        figures[implementation] = measure(args, implementation, extra, lifetime)
    target = 1.1 * 3600 / 3600
    print("IdP calls per active user-hour, by provider:")
    for implementation, per_hour in figures.items():
        what = {"ours": "ours", "certified": "certified (entitlements only in userinfo)"}
        print(
            f"  {what.get(implementation, implementation)}: egi {per_hour['egi']:.2f} "
            f"(target <= {target:.2f}), generic {per_hour['generic']:.2f} (upstream defaults)"
        )


def measure(args: argparse.Namespace, implementation: str, extra: str, lifetime: float) -> dict:
    setup = Setup(
        args.users, hub_extra=extra, implementation=implementation, access_token_lifetime=lifetime
    ).start()
    try:
        for kind in ("egi", "generic"):
            setup.login_all(kind)
        for provider in setup.providers.values():
            provider.reset_stats()
        seconds = args.hours * 3600 / args.speed
        failures = asyncio.run(drive(setup, seconds, period=60 / args.speed))
        stats = {kind: setup.providers[kind].stats() for kind in setup.KINDS}
    finally:
        setup.stop()
    per_hour = {kind: idp_calls(stats[kind]) / args.users / args.hours for kind in setup.KINDS}
    print(
        f"provider={implementation} users={args.users} simulated_hours={args.hours} "
        f"speed={args.speed}x token_lifetime={lifetime:.1f}s real (3600 s simulated) "
        f"failed_requests={failures}"
    )
    for kind in setup.KINDS:
        print(f"  {kind} provider counters: {stats[kind]}")
    target = 1.1 * 3600 / 3600
    print(f"egi:     {per_hour['egi']:.2f} IdP calls/user/hour (target <= {target:.2f})")
    print(f"generic: {per_hour['generic']:.2f} IdP calls/user/hour (upstream defaults)")
    if per_hour["egi"]:
        print(f"ratio generic/egi: {per_hour['generic'] / per_hour['egi']:.1f}x")
    return per_hour


def idp_calls(stats: dict) -> int:
    """Token grants, userinfo, discovery, jwks, revocation and introspection calls."""
    total = sum(stats.get("token", {}).values())
    for key in ("userinfo", "discovery", "jwks", "revocation", "introspection"):
        total += stats.get(key, 0)
    return total


if __name__ == "__main__":
    main()
