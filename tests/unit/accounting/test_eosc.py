"""EOSC push against a local EOSC accounting emulator: failures, re-runs, no double counting."""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer

import pytest

from egi_notebooks.services.accounting.eosc import EOSCPusher
from egi_notebooks.services.accounting.store import Observation, Store, make_vmuuid
from tests.harness.json_http import JSONHandler

DAY1 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
H = 3600


class EOSCEmulator:
    """Token endpoint (client credentials) and the metrics endpoint; ``plan`` injects failures."""

    def __init__(self) -> None:
        self.plan: list[str] = []
        self.metrics: list[dict] = []
        self.lock = threading.Lock()
        emulator = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/token":
                    expected = base64.b64encode(b"acct-client:s3cret").decode()
                    if self.headers.get("Authorization") != f"Basic {expected}":
                        return self.answer(401, b'{"error": "invalid_client"}')
                    return self.answer(200, b'{"access_token": "tok-1", "expires_in": 300}')
                if self.path != "/accounting-system/installations/inst-42/metrics":
                    return self.answer(404, b"{}")
                if self.headers.get("Authorization") != "Bearer tok-1":
                    return self.answer(401, b"{}")
                with emulator.lock:
                    step = emulator.plan.pop(0) if emulator.plan else "ok"
                if step == "500":
                    return self.answer(500, b'{"message": "down"}')
                if step == "garbage":
                    return self.answer(201, b"<html>")
                with emulator.lock:
                    emulator.metrics.append(json.loads(raw))
                    ident = len(emulator.metrics)
                return self.answer(201, json.dumps({"id": f"m{ident}"}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def eosc():
    emulator = EOSCEmulator()
    yield emulator
    emulator.server.shutdown()
    emulator.server.server_close()


def pusher(eosc: EOSCEmulator, **kw) -> EOSCPusher:
    return EOSCPusher(
        accounting_url=eosc.url, installation_id="inst-42", token_url=f"{eosc.url}/token",
        client_id="acct-client", client_secret="s3cret", default_metric="hours-default",
        metric_definitions={"gpu": "hours-gpu"}, backoff=0.01, max_retries=1, **kw,
    )  # fmt: skip


def obs(user, vo, flavor, start) -> Observation:
    return Observation(
        vmuuid=make_vmuuid("t", user, flavor, start), user=user, server_name=flavor,
        start_time=start, primary_vo=vo, flavor=flavor,
    )  # fmt: skip


def history(sessions) -> Store:
    """alice: 22:00 day 1 -> 02:00 day 2 (small); bob: two gpu sessions on day 1 (3 h);
    carol: still running at the last poll on day 3."""
    store = Store(sessions)
    a = obs("alice", "vo.a", "small", DAY1 + 22 * H)
    b1 = obs("bob", "vo.b", "gpu", DAY1 + H)
    b2 = obs("bob", "vo.b", "gpu", DAY1 + 5 * H)
    store.apply_poll([b1], DAY1 + 3 * H)
    store.apply_poll([], DAY1 + 4 * H)
    store.apply_poll([b2], DAY1 + 6 * H)
    store.apply_poll([a], DAY1 + 7 * H)  # b2 ended at 6h: 1 h
    store.apply_poll([a], DAY1 + 26 * H)
    store.apply_poll([], DAY1 + 27 * H)  # alice ended at 26h
    carol = obs("carol", "vo.c", "small", DAY1 + 47 * H)
    store.apply_poll([carol], DAY1 + 50 * H)  # day 3, 02:00: days 1 and 2 are complete
    return store


def totals(metrics: list[dict]) -> dict:
    out: dict = {}
    for m in metrics:
        key = (m["time_period_start"][:10], m["user_id"], m["group_id"], m["metric_definition_id"])
        out[key] = out.get(key, 0) + m["value"]
    return out


EXPECTED = {
    ("2026-03-01", "alice", "vo.a", "hours-default"): 2.0,
    ("2026-03-01", "bob", "vo.b", "hours-gpu"): 3.0,
    ("2026-03-02", "alice", "vo.a", "hours-default"): 2.0,
    ("2026-03-02", "carol", "vo.c", "hours-default"): 1.0,
}


async def test_push_with_failures_and_reruns_never_double_counts(sessions, eosc, caplog):
    store = history(sessions)
    # first metric: 500 twice (given up this cycle); the others go through
    eosc.plan = ["500", "500"]
    with caplog.at_level(logging.WARNING):
        first = await pusher(eosc).push(sessions, store)
    assert first == 1  # day 1 incomplete -> day 2 waits (days go in order)
    assert "s3cret" not in caplog.text and "tok-1" not in caplog.text
    eosc.plan = ["garbage", "ok"]  # the answer was garbage: not remembered, sent again
    second = await pusher(eosc).push(sessions, store)
    assert second == 3
    assert await pusher(eosc).push(sessions, store) == 0  # re-run: nothing new
    assert totals(eosc.metrics) == EXPECTED
    m = eosc.metrics[0]
    assert (m["time_period_start"], m["time_period_end"]) == (
        "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z",
    )  # fmt: skip


async def test_unfinished_days_wait_for_a_complete_poll(sessions, eosc):
    store = Store(sessions)
    store.apply_poll([obs("alice", "vo.a", "small", DAY1 + H)], DAY1 + 23 * H)
    assert await pusher(eosc).push(sessions, store) == 0  # day 1 not over at the last poll
    store.apply_poll([], DAY1 + 25 * H)
    assert await pusher(eosc).push(sessions, store) == 1
    assert totals(eosc.metrics) == {("2026-03-01", "alice", "vo.a", "hours-default"): 22.0}
