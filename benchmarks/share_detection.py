"""How long after a share the server's tokens stop.

One hub (EGISpawner on the Kubernetes emulator, the certified provider, the tokens service),
alice's running server; each round alice shares it with bob through JupyterHub's API, ends
the share and restarts the server (a server that was shared gets no token until it restarts).
Measured: how long the share request takes (the hub empties the Secret and revokes the
delivered access token before it makes the share), then from the share's answer:

- tokens service: when the server's own token is first refused (checked at each request),
- token file: when the file the notebook reads is first empty,
- revocation: when the access token delivered before the share is inactive at the provider
  (introspection),

The file and revocation figures are expected at the first poll (the share request did both),
whatever the moment of the watcher's period (``--interval``,
``EGISpawner.share_check_interval``) the share comes at. Pollers' resolution: one request or
file read (~10-50 ms here).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _auth_hubs import spread  # noqa: E402

from tests.e2e.test_sharing_e2e import (  # noqa: E402
    ALICE,
    BOB,
    as_user,
    read,
    sharing_config,
    tokens_service,
    wait_for_tokens_service,
)
from tests.e2e.test_spawner_e2e import (  # noqa: E402
    notebook_environ,
    spawner_hub,
    started,
    stop,
    user_token,
)
from tests.harness.hub import free_port  # noqa: E402
from tests.harness.login import login  # noqa: E402

DEADLINE = 300.0


def until(predicate, what: str) -> float:
    """Seconds (perf_counter) at which ``predicate`` first held."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.perf_counter()


def running_server(egi) -> tuple[str, Path]:
    """Alice's server (re)started: its API token and token file, once the file has a token."""
    started(egi, ALICE)
    env = notebook_environ(egi, ALICE)
    token_file = Path(env["EGI_ACCESS_TOKEN_FILE"])
    until(lambda: read(token_file), "a token in the file before sharing")
    return env["JUPYTERHUB_API_TOKEN"], token_file


def one_round(egi, alice: str, interval: float) -> dict[str, float]:
    server_token, token_file = running_server(egi)
    # a share comes at any moment of the watcher's period, not in step with it
    time.sleep(random.uniform(0, interval))
    token = read(token_file)
    assert egi.provider.introspect(token)["active"], "the file's token is not live"
    asked_at = time.perf_counter()
    share = as_user(egi, alice, "POST", f"/shares/{ALICE}/", json={"user": BOB})
    shared_at = time.perf_counter()
    assert share.status_code == 200, share.text
    refused = until(lambda: tokens_service(egi, server_token).status_code == 403, "refusal")
    emptied = until(lambda: read(token_file) == "", "the file emptied")
    revoked = until(lambda: not egi.provider.introspect(token)["active"], "the revocation")
    ended = as_user(egi, alice, "DELETE", f"/shares/{ALICE}/")
    assert ended.status_code == 204, ended.text
    stop(egi, ALICE)  # only a restart brings the tokens back
    return {
        "share request": shared_at - asked_at,
        "service refuses": refused - shared_at,
        "file empty": emptied - shared_at,
        "token revoked": revoked - shared_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--interval", type=float, default=5.0, help="share_check_interval")
    args = parser.parse_args()
    extra = sharing_config(free_port()) + f"c.EGISpawner.share_check_interval = {args.interval}\n"
    with spawner_hub(Path(tempfile.mkdtemp(prefix="egi-bench-sharing-")), extra) as egi:
        egi.service_url = f"{egi.hub.url}/services/tokens/token"
        egi.provider.settings(access_token_lifetime=600)  # no expiry inside a round
        assert login(egi.hub.url, "alice").ok and login(egi.hub.url, "bob").ok
        alice = user_token(egi, ALICE)
        server_token, _ = running_server(egi)
        assert wait_for_tokens_service(egi, server_token).status_code == 200
        stop(egi, ALICE)
        rounds = [one_round(egi, alice, args.interval) for _ in range(args.rounds)]
    print(f"share_check_interval = {args.interval} s, rounds = {len(rounds)}")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print(
            f"{key:>20}: {spread(values)} s, min {min(values):.2f}, max {max(values):.2f},"
            f" stdev {statistics.stdev(values):.2f}"
        )


if __name__ == "__main__":
    main()
