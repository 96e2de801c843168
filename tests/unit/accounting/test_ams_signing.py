"""Messages reach APEL only signed by the host certificate, as ssmsend signs them.

APEL's receiver verifies each message's S/MIME signature and the signer's chain, and takes the
content after the signed part's ``text/plain`` header; the tests play that receiver with the
real ``openssl smime -verify`` against a CA and host certificate made here.
"""

from __future__ import annotations

import datetime
import logging
import subprocess

import pytest

from egi_notebooks.services.accounting.ams import AMSSender, Signer, SigningError
from egi_notebooks.services.accounting.app import AccountingApp
from egi_notebooks.services.accounting.dirq_queue import OutgoingQueue
from tests.harness.ams import AMSEmulator
from tests.harness.pki import DAY, NotVerified, make_host_pki, require_openssl, verify_like_apel

MESSAGES = [
    "APEL-cloud-message: v0.4\nVMUUID: m0\nSiteName: EGI-TEST\nStatus: completed\n%%\n",
    "APEL-cloud-message: v0.4\nVMUUID: m1\nSiteName: EGI-TEST\nGlobalUserName: a@egi.eu\n%%\n"
    "VMUUID: m2\nSiteName: EGI-TEST\n%%\n",
]


def sender(ams: AMSEmulator, cert_file, key_file, **kw) -> AMSSender:
    return AMSSender(url=ams.url, token=ams.token, cert_file=str(cert_file),
                     key_file=str(key_file), backoff=0.01, max_retries=0, **kw)  # fmt: skip


def fill(tmp_path, messages=MESSAGES) -> OutgoingQueue:
    queue = OutgoingQueue(tmp_path / "q")
    for message in messages:
        queue.add(message)
    return queue


async def test_apel_receiver_verifies_every_message(ams, pki, tmp_path, caplog):
    queue = fill(tmp_path)
    with caplog.at_level(logging.DEBUG):
        outcome = await sender(ams, pki.cert_file, pki.key_file).send_queue(queue)
    assert (outcome.sent, outcome.failed) == (2, 0) and queue.count() == 0
    received = ams.received(pki.ca_file, tmp_path / "rx")
    assert sorted(r.content for r in received) == sorted(MESSAGES)
    assert {r.signer for r in received} == {pki.subject}
    # the format ssmsend publishes: a detached multipart/signed S/MIME text, dirq name = empaid
    for message in ams.acked:
        assert message["data"].startswith("MIME-Version: 1.0")
        assert (
            'Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"'
            in (message["data"])
        )
        assert 'micalg="sha-256"' in message["data"]
        assert message["attributes"]["empaid"]
    key_pem = pki.key_file.read_text()
    body = "".join(key_pem.splitlines()[1:-1])
    assert all(line not in caplog.text for line in key_pem.splitlines()[1:-1])
    assert body[:40] not in caplog.text
    assert ams.token not in caplog.text
    assert pki.subject in caplog.text  # who signed, as an operator checks it against GOCDB


def test_receiver_reads_ours_as_it_reads_ssmsends(pki, tmp_path):
    """Same content and signer from our signature and from ``openssl smime -sign -text``
    (the command ssmsend runs): the harness receiver is not tuned to our output."""
    openssl = require_openssl()
    ours = Signer.load(str(pki.cert_file), str(pki.key_file)).sign(MESSAGES[1])
    theirs = subprocess.run(
        [openssl, "smime", "-sign", "-inkey", str(pki.key_file), "-signer",
         str(pki.cert_file), "-text"],
        input=MESSAGES[1].encode(), capture_output=True, timeout=60, check=True,
    ).stdout.decode()  # fmt: skip
    a = verify_like_apel(ours, pki.ca_file, tmp_path / "a")
    b = verify_like_apel(theirs, pki.ca_file, tmp_path / "b")
    assert (a.content, a.signer) == (b.content, b.signer) == (MESSAGES[1], pki.subject)


def test_receiver_rejects_tampered_unsigned_and_foreign(pki, tmp_path):
    signed = Signer.load(str(pki.cert_file), str(pki.key_file)).sign(MESSAGES[0])
    with pytest.raises(NotVerified):
        verify_like_apel(signed.replace("VMUUID: m0", "VMUUID: m9"), pki.ca_file, tmp_path)
    with pytest.raises(NotVerified):
        verify_like_apel(MESSAGES[0], pki.ca_file, tmp_path)  # what the sender used to send
    other = make_host_pki(tmp_path / "other", name="other")
    foreign = Signer.load(str(other.cert_file), str(other.key_file)).sign(MESSAGES[0])
    with pytest.raises(NotVerified):
        verify_like_apel(foreign, pki.ca_file, tmp_path)


async def test_certificate_expiring_within_a_day_sends_nothing(ams, pki, tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    soon = pki.host_cert(tmp_path, "soon", not_before=now - DAY, not_after=now + DAY * 0.9)
    queue = fill(tmp_path)
    with pytest.raises(SigningError, match=r"AMSSender.cert_file .* expires within a day"):
        await sender(ams, *soon).send_queue(queue)
    assert queue.count() == 2 and ams.requests == 0  # kept, and unlocked, for the next run
    assert len(list(queue.locked())) == 2
    # two days left: fine (ssmsend's limit is one day)
    later = pki.host_cert(tmp_path, "later", not_before=now - DAY, not_after=now + 2 * DAY)
    outcome = await sender(ams, *later).send_queue(fill(tmp_path / "2"))
    assert outcome.sent == 2


def test_unusable_certificate_or_key_is_refused_without_showing_the_key(pki, tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    other_cert, other_key = pki.host_cert(tmp_path, "other", not_before=now - DAY,
                                          not_after=now + 30 * DAY)  # fmt: skip
    expired = pki.host_cert(tmp_path, "old", not_before=now - 30 * DAY, not_after=now - DAY)
    future = pki.host_cert(tmp_path, "new", not_before=now + DAY, not_after=now + 30 * DAY)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    cases = {
        (pki.cert_file, other_key): "is not the key of AMSSender.cert_file",
        expired: "has expired or expires within a day",
        future: "is not valid before",
        (pki.cert_file, tmp_path / "missing.pem"): r"AMSSender.key_file .*missing.pem",
        (tmp_path / "missing.pem", pki.key_file): r"AMSSender.cert_file .*missing.pem",
        (pki.key_file, pki.key_file): "AMSSender.cert_file .* not a PEM certificate",
        (pki.cert_file, garbage): "AMSSender.key_file .* not an unencrypted PEM private key",
        (pki.cert_file, pki.cert_file): "not an unencrypted PEM private key",
    }
    secrets = [pki.key_file.read_text(), other_key.read_text(), "bm90IGEga2V5"]
    for (cert, key), expected in cases.items():
        with pytest.raises(SigningError, match=expected) as e:
            Signer.load(str(cert), str(key))
        assert all(line not in str(e.value) for s in secrets for line in s.splitlines()[1:-1])
    assert other_cert.exists()


def start_app(tmp_path, *args: str) -> AccountingApp:
    """The service started as the hub starts it; ``args`` replace these defaults."""
    defaults = [
        f"--db-url=sqlite:///{tmp_path / 'accounting.sqlite'}",
        f"--spool-dir={tmp_path / 'q'}",
        "--ApelRenderer.site_name=EGI-TEST",
        "--AccountingApp.serve_web=False",
        "--AMSSender.url=https://msg.argo.grnet.gr",
        "--AMSSender.token=t0ken",
    ]
    given = {a.split("=", 1)[0] for a in args}
    AccountingApp.clear_instance()
    app = AccountingApp()
    app.initialize([*(a for a in defaults if a.split("=", 1)[0] not in given), *args])
    return app


@pytest.mark.parametrize(
    "args, trait",
    [
        ([], "AMSSender.cert_file and AMSSender.key_file"),
        (["--AMSSender.cert_file={cert}"], "AMSSender.key_file"),
        (["--AMSSender.key_file={key}"], "AMSSender.cert_file"),
        (["--AMSSender.cert_file={soon}", "--AMSSender.key_file={soon_key}"],
         "AMSSender.cert_file"),
        (["--AMSSender.cert_file={cert}", "--AMSSender.key_file={key}", "--AMSSender.token="],
         "AMSSender.token"),
    ],
)  # fmt: skip
def test_service_refuses_to_start_unable_to_sign(pki, tmp_path, capfd, args, trait):
    now = datetime.datetime.now(datetime.UTC)
    soon, soon_key = pki.host_cert(tmp_path, "soon", not_before=now - DAY,
                                   not_after=now + DAY / 2)  # fmt: skip
    paths = {"cert": pki.cert_file, "key": pki.key_file, "soon": soon, "soon_key": soon_key}
    try:
        with pytest.raises(SystemExit) as e:
            start_app(tmp_path, *(a.format(**paths) for a in args))
    finally:
        AccountingApp.clear_instance()
    assert e.value.code == 2
    # the Application's log goes to stderr, one line per record, as JupyterHub's: "[C ..."
    (line,) = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[C ")]
    assert trait in line


def test_service_starts_with_a_usable_certificate(pki, tmp_path):
    try:
        app = start_app(tmp_path, f"--AMSSender.cert_file={pki.cert_file}",
                        f"--AMSSender.key_file={pki.key_file}")  # fmt: skip
        app.engine.dispose()
    finally:
        AccountingApp.clear_instance()
    assert app.ams.cert_file == str(pki.cert_file)
