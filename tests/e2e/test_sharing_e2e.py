"""A server shared through JupyterHub's sharing gets none of its owner's tokens, end to end.

Real hub + CHP, the certified provider (as EGI Check-in, with introspection), EGISpawner on
the Kubernetes emulator (the token Secret materialised as the file the notebook reads), the
tokens service run by the hub. Sharing is enabled the production way: a role with the
``shares`` scope for one VO's hub group (alice's VO, not bob's).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.e2e.test_spawner_e2e import (
    notebook_environ,
    spawner_hub,
    start,
    through_proxy,
    user_token,
)
from tests.harness.hub import free_port
from tests.harness.login import login
from tests.harness.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

ALICE, BOB = "alice@egi.eu", "bob@egi.eu"
SHARING_VO = "vo.notebooks.egi.eu"  # alice is a member, bob is not
# long enough that a token found inactive was revoked, not expired; refreshed at half of it
LIFETIME = 60
SPAWN_SECONDS = 180  # a pod start on a busy machine (other tests' hubs and pods)


def sharing_config(port: int) -> str:
    return f"""
from egi_notebooks.hubconfig import add_tokens_service, use_egi_pages
add_tokens_service(c, url="http://127.0.0.1:{port}")
use_egi_pages(c)  # the home page tells the owner about a server that was shared
c.EGISpawner.start_timeout = {SPAWN_SECONDS}
c.EGISpawner.http_timeout = {SPAWN_SECONDS}
c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, {{
    "name": "sharing",
    "scopes": ["shares!user", "read:users:name", "read:groups:name"],
    "groups": [{SHARING_VO!r}],
}}]
"""


@pytest.fixture
def egi(tmp_path):
    with spawner_hub(tmp_path, sharing_config(free_port())) as hub:
        hub.service_url = f"{hub.hub.url}/services/tokens/token"
        yield hub


def tokens_service(egi, token: str) -> httpx.Response:
    return httpx.get(egi.service_url, headers={"Authorization": f"token {token}"}, timeout=30)


def wait_for_tokens_service(egi, token: str) -> httpx.Response:
    def answered():
        try:
            r = tokens_service(egi, token)
        except httpx.HTTPError:
            return None
        return r if r.status_code != 503 and r.status_code < 502 else None

    return wait_until(answered, 60, "the tokens service")


def as_user(egi, token: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(
        method,
        f"{egi.hub.url}/hub/api{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        **kw,
    )


def started(egi, user: str, server: str = "") -> dict:
    r = start(egi, user, server)
    assert r.status_code in (201, 202), r.text
    return egi.hub.wait_for_server(user, server, timeout=SPAWN_SECONDS)


def stop(egi, user: str, server: str = "") -> None:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    r = egi.hub.api("DELETE", path)
    assert r.status_code in (202, 204), r.text
    egi.hub.wait_for_server(user, server, ready=False, timeout=SPAWN_SECONDS)


def revocations(egi) -> list[int]:
    """How many access tokens each withholding of alice's tokens revoked (hub log)."""
    return [
        int(m)
        for m in re.findall(
            rf"Revoked (\d+) access tokens delivered to {re.escape(ALICE)}", egi.hub.log()
        )
    ]


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


class Delivering(NamedTuple):
    """Alice's running server while it delivers her access token."""

    token_file: Path  # the token file inside the server
    server_api_token: str  # the server's JUPYTERHUB_API_TOKEN, which the tokens service takes
    alice: str  # a hub API token of alice's own
    delivered: set[str]  # the access tokens the file and the tokens service handed out
    expiry: dict[str, int]  # their exp at the provider


def alice_delivering_tokens(egi, server: str = "") -> Delivering:
    """Alice and bob logged in, alice's server started; waits until the token file and the
    tokens service deliver her current access token."""
    egi.provider.settings(access_token_lifetime=LIFETIME)
    assert login(egi.hub.url, "alice").ok and login(egi.hub.url, "bob").ok
    started(egi, ALICE, server)
    env = notebook_environ(egi, ALICE, server)
    token_file = Path(env["EGI_ACCESS_TOKEN_FILE"])
    wait_until(
        lambda: read(token_file) == egi.auth_state(ALICE)["access_token"],
        60,
        "the access token in the token file",
    )
    served = wait_for_tokens_service(egi, env["JUPYTERHUB_API_TOKEN"])
    assert served.status_code == 200, served.text
    delivered = {read(token_file) or "", served.json()["access_token"]}
    return Delivering(
        token_file,
        env["JUPYTERHUB_API_TOKEN"],
        user_token(egi, ALICE),
        delivered,
        {t: egi.provider.introspect(t)["exp"] for t in delivered},
    )


def assert_refused_until_restart(egi, server_api_token: str) -> httpx.Response:
    """The tokens service refuses the server's token, saying why and what brings it back."""
    r = tokens_service(egi, server_api_token)
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert "was shared" in message and "restart it to get tokens again" in message, message
    return r


def home_page(egi) -> str:
    signed_in = login(egi.hub.url, "alice")
    # signed in: sent on (home, or the running server)
    assert signed_in.response.status_code == 302, signed_in.response.text
    page = signed_in.client.get(f"{egi.hub.url}/hub/home")
    assert page.status_code == 200, page.text
    return page.text


def assert_told_on_home_page(egi, server: str = "") -> None:
    text = home_page(egi)
    assert "has been shared since it started" in text, text
    assert "Restart it" in text


def restarted(egi, user: str, server: str = "") -> tuple[Path, str]:
    """Stop and start the server: its token file and its new server token once the file
    holds the owner's current access token."""
    stop(egi, user, server)
    started(egi, user, server)
    env = notebook_environ(egi, user, server)
    token_file = Path(env["EGI_ACCESS_TOKEN_FILE"])
    wait_until(
        lambda: read(token_file) and read(token_file) == egi.auth_state(user)["access_token"],
        60,
        "the access token in the restarted server's file",
    )
    return token_file, env["JUPYTERHUB_API_TOKEN"]


def test_a_shared_server_gets_no_token_and_the_delivered_one_is_revoked(egi):
    # before sharing: the file and the tokens service deliver alice's current token
    token_file, server_api_token, alice, delivered, expiry = alice_delivering_tokens(egi)
    bob = user_token(egi, BOB)
    bob_copy = server_api_token  # what bob copies from the shared server's environment

    # sharing is a VO's privilege: bob's VO has no role with the shares scope
    refused = as_user(egi, bob, "POST", f"/shares/{BOB}/", json={"user": ALICE})
    assert refused.status_code == 403, refused.text

    # alice shares her server with bob, who then reaches it through the proxy
    share = as_user(egi, alice, "POST", f"/shares/{ALICE}/", json={"user": BOB})
    assert share.status_code == 200, share.text
    bob_in_alice = user_token(egi, BOB)  # made after the share: carries its access
    assert through_proxy(egi, ALICE, bob_in_alice, "api/status").status_code == 200

    # the server's own token is refused by the tokens service from the moment of the share
    r = tokens_service(egi, server_api_token)
    assert r.status_code == 403 and "shared" in r.json()["message"], r.text
    assert not any(t in r.text for t in delivered)

    # the file inside alice's server holds no token
    wait_until(lambda: read(token_file) == "", 60, "the token file emptied")
    id_file = token_file.parent / "id_token"
    assert read(id_file) == ""

    # the tokens delivered before the share are dead at the provider; alice has a new one
    wait_until(
        lambda: not any(egi.provider.introspect(t)["active"] for t in delivered),
        60,
        "the delivered access tokens revoked",
    )
    assert all(time.time() < exp for exp in expiry.values()), "expired, not revoked"
    assert wait_until(lambda: revocations(egi), 60, "the revocation logged")[0] >= 1
    current = wait_until(
        lambda: (t := egi.auth_state(ALICE)["access_token"]) not in delivered and t,
        60,
        "a new access token for alice after the revocation",
    )
    assert egi.provider.introspect(current)["active"] is True

    # refreshes while shared do not reach the file
    wait_until(
        lambda: egi.auth_state(ALICE)["access_token"] != current,
        LIFETIME * 3,
        "a refresh while shared",
    )
    assert read(token_file) == ""
    assert tokens_service(egi, server_api_token).status_code == 403

    # alice ends the share: bob may have copied the server's token or left a process
    # running, so the server gets no token until it restarts
    ended = as_user(egi, alice, "DELETE", f"/shares/{ALICE}/")
    assert ended.status_code == 204, ended.text
    assert_refused_until_restart(egi, server_api_token)
    at_end = egi.auth_state(ALICE)["access_token"]
    wait_until(
        lambda: egi.auth_state(ALICE)["access_token"] != at_end,
        LIFETIME * 3,
        "a refresh after the share ended",
    )
    assert read(token_file) == "" and read(id_file) == ""
    refused = assert_refused_until_restart(egi, server_api_token)
    assert egi.auth_state(ALICE)["access_token"] not in refused.text
    # the owner is told on the hub's home page
    assert_told_on_home_page(egi)

    # restarting the server (a new pod, a new server token) brings the tokens back
    token_file, server_api_token = restarted(egi, ALICE)
    served = tokens_service(egi, server_api_token)
    assert served.status_code == 200, served.text
    assert served.json()["access_token"] == read(token_file)
    assert egi.provider.introspect(read(token_file))["active"] is True
    # the old server token (the copy bob kept) gets nothing
    assert tokens_service(egi, bob_copy).status_code == 403
    assert "has been shared" not in home_page(egi)

    # a share code not yet accepted shares the server too
    restored = read(token_file)
    code = as_user(egi, alice, "POST", f"/share-codes/{ALICE}/", json={})
    assert code.status_code == 200, code.text
    assert tokens_service(egi, server_api_token).status_code == 403
    wait_until(lambda: read(token_file) == "", 60, "the token file emptied for a share code")
    wait_until(
        lambda: not egi.provider.introspect(restored)["active"], 60, "the token revoked again"
    )
    wait_until(lambda: len(revocations(egi)) >= 2, 60, "the second revocation logged")
    gone = as_user(egi, alice, "DELETE", f"/share-codes/{ALICE}/")
    assert gone.status_code == 204, gone.text
    assert_refused_until_restart(egi, server_api_token)
    assert read(token_file) == ""
    assert egi.auth_state(ALICE)["refresh_token"] not in egi.hub.log()


@pytest.fixture
def egi_kept(tmp_path):
    """As ``egi``, with servers that outlive a hub restart (as in production)."""
    extra = sharing_config(free_port()) + "c.JupyterHub.cleanup_servers = False\n"
    with spawner_hub(tmp_path, extra) as hub:
        hub.service_url = f"{hub.hub.url}/services/tokens/token"
        yield hub


def test_a_server_shared_before_a_hub_restart_stays_without_tokens(egi_kept):
    egi = egi_kept
    token_file, server_api_token, alice, delivered, _ = alice_delivering_tokens(egi)
    share = as_user(egi, alice, "POST", f"/shares/{ALICE}/", json={"user": BOB})
    assert share.status_code == 200, share.text
    ended = as_user(egi, alice, "DELETE", f"/shares/{ALICE}/")
    assert ended.status_code == 204, ended.text

    egi.hub.restart()  # the server keeps running; no share exists any more
    assert read(token_file) == ""
    wait_for_tokens_service(egi, server_api_token)
    assert_refused_until_restart(egi, server_api_token)
    at_restart = egi.auth_state(ALICE)["access_token"]
    wait_until(
        lambda: egi.auth_state(ALICE)["access_token"] != at_restart,
        LIFETIME * 3,
        "a refresh after the hub restart",
    )
    assert read(token_file) == ""
    assert_refused_until_restart(egi, server_api_token)
    assert_told_on_home_page(egi)
    # a restart of the server brings the tokens back
    token_file, server_api_token = restarted(egi, ALICE)
    assert tokens_service(egi, server_api_token).status_code == 200
