"""Sending the queue to a local AMS with injected failures: nothing lost, no ack sent twice.

Every message is signed with a host certificate of a test CA; what arrives is checked as APEL's
receiver checks it (``openssl smime -verify``).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from egi_notebooks.services.accounting.ams import AMSError, AMSSender
from egi_notebooks.services.accounting.dirq_queue import OutgoingQueue
from tests.harness.ams import AMSEmulator
from tests.harness.pki import HostPKI


def sender(ams: AMSEmulator, pki: HostPKI, **kw) -> AMSSender:
    kw.setdefault("max_retries", 1)
    kw.setdefault("token", ams.token)
    return AMSSender(url=ams.url, cert_file=str(pki.cert_file), key_file=str(pki.key_file),
                     backoff=0.01, timeout=0.5, **kw)  # fmt: skip


def fill(tmp_path, n: int) -> OutgoingQueue:
    queue = OutgoingQueue(tmp_path / "q")
    for i in range(n):
        queue.add(f"APEL-cloud-message: v0.4\nVMUUID: m{i}\n%%\n")
    return queue


async def test_failures_keep_messages_until_acknowledged(ams, pki, tmp_path, caplog):
    queue = fill(tmp_path, 6)
    # 1st message: 500 then garbage -> kept; 2nd: dropped connection then ok; 3rd: too slow
    # twice -> kept; 4th: stored but the answer is garbage, then ok; the rest ok
    ams.plan = ["500", "garbage", "drop", "ok", "slow", "slow", "stored-garbage", "ok"]
    ams.slow_seconds = 0.8
    with caplog.at_level(logging.WARNING):
        first = await sender(ams, pki).send_queue(queue)
    assert (first.sent, first.failed) == (4, 2)
    assert queue.count() == 2
    second = await sender(ams, pki).send_queue(queue)
    assert (second.sent, second.failed) == (2, 0)
    assert queue.count() == 0
    received = ams.received(pki.ca_file, tmp_path / "rx")
    assert {r.signer for r in received} == {pki.subject}
    acked = [r.content for r in received]
    expected = [f"APEL-cloud-message: v0.4\nVMUUID: m{i}\n%%\n" for i in range(6)]
    assert sorted(acked) == expected
    # AMS holds duplicates only of messages whose acknowledgement never reached the sender
    # (APEL keeps the latest record per VMUUID); no acknowledged message went twice
    assert len(acked) == len(set(acked)) == 6
    for _ in range(30):  # the last "slow" answer may still be sleeping in the emulator
        if len(ams.stored) == 9:
            break
        await asyncio.sleep(0.1)
    # the signed part is the message with CRLF line ends (S/MIME canonical text)
    stored = sorted(m["data"].split("VMUUID: ")[1][:2] for m in ams.stored)
    assert stored == ["m0", "m1", "m2", "m2", "m2", "m3", "m3", "m4", "m5"]
    assert ams.token not in caplog.text
    assert all(m["attributes"]["empaid"] for m in ams.acked)


async def test_wrong_token_keeps_everything(ams, pki, tmp_path):
    queue = fill(tmp_path, 2)
    outcome = await sender(ams, pki, token="wrong", max_retries=0).send_queue(queue)
    assert (outcome.sent, outcome.failed) == (0, 2)
    assert queue.count() == 2 and ams.acked == []


async def test_no_token_is_a_clear_error(pki, tmp_path):
    with pytest.raises(AMSError, match="token"):
        await AMSSender(url="http://127.0.0.1:9", cert_file=str(pki.cert_file),
                        key_file=str(pki.key_file)).send_queue(fill(tmp_path, 1))  # fmt: skip


async def test_no_certificate_is_a_clear_error_and_sends_nothing(ams, tmp_path):
    queue = fill(tmp_path, 1)
    with pytest.raises(AMSError, match="AMSSender.cert_file and AMSSender.key_file"):
        await AMSSender(url=ams.url, token=ams.token).send_queue(queue)
    assert ams.requests == 0 and queue.count() == 1
