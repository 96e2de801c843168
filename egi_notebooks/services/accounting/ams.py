"""Sending the queued APEL messages straight to the ARGO Messaging Service (optional).

The same protocol as ``ssmsend`` with ``protocol = AMS``: each message of the dirq queue is
locked, S/MIME signed with the site's host certificate, published to the AMS topic, and removed
from the queue only after AMS acknowledged it with a message id. APEL's receiver verifies every
message's signature against the host DN registered in GOCDB and rejects unsigned ones.

The signature is the one ``ssmsend`` makes (``openssl smime -sign -text``): a detached
``multipart/signed`` S/MIME message whose signed part is the APEL message with a
``Content-Type: text/plain`` header, SHA-256, the signer's certificate included. The receiver
strips that header after verifying, so the header is part of the format. The signed text is
the AMS message's base64 ``data``; its dirq name is the ``empaid`` attribute.

``argo-ams-library`` is synchronous (requests); this module speaks the AMS REST API with httpx
instead, so the service's event loop never blocks. The token travels in the ``x-api-key``
header, never in a URL (URLs end up in logs).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from ...retry import retry
from .dirq_queue import OutgoingQueue

#: ssmsend refuses a certificate that expires within a day (``openssl x509 -checkend 86400``)
MIN_VALIDITY = datetime.timedelta(days=1)


class AMSError(Exception):
    pass


class SigningError(AMSError):
    """The host certificate or key cannot sign (missing, mismatched, expiring)."""


@dataclass
class SendOutcome:
    sent: int = 0
    failed: int = 0


class Signer:
    """The host certificate and key, checked as ssmsend checks them before sending."""

    def __init__(
        self, cert: x509.Certificate, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ) -> None:
        self.cert = cert
        self._key = key

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @classmethod
    def load(cls, cert_file: str, key_file: str, now: datetime.datetime | None = None) -> Signer:
        """Read both files; SigningError naming the file and the trait for anything unusable.

        Never puts the key's content in a message: only its path.
        """
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        except OSError as e:
            raise SigningError(f"AMSSender.cert_file {cert_file}: {e.strerror}") from None
        except ValueError:
            raise SigningError(f"AMSSender.cert_file {cert_file}: not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except OSError as e:
            raise SigningError(f"AMSSender.key_file {key_file}: {e.strerror}") from None
        except (ValueError, TypeError):
            # TypeError: an encrypted key (ssmsend needs an unencrypted one too)
            raise SigningError(
                f"AMSSender.key_file {key_file}: not an unencrypted PEM private key"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningError(f"AMSSender.key_file {key_file}: only RSA and EC keys can sign")
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        if key.public_key().public_bytes(pem, public) != cert.public_key().public_bytes(
            pem, public
        ):
            raise SigningError(
                f"AMSSender.key_file {key_file} is not the key of AMSSender.cert_file {cert_file}"
            )
        now = now or datetime.datetime.now(datetime.UTC)
        if cert.not_valid_after_utc - now < MIN_VALIDITY:
            raise SigningError(
                f"AMSSender.cert_file {cert_file} ({cert.subject.rfc4514_string()}) has expired "
                f"or expires within a day ({cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
            )
        if cert.not_valid_before_utc > now:
            raise SigningError(
                f"AMSSender.cert_file {cert_file} is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )
        return cls(cert, key)

    def sign(self, message: str) -> str:
        """The detached S/MIME signature of ``message`` as a text/plain part, as ssmsend."""
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(message.encode("utf-8"))
            .add_signer(self.cert, self._key, hashes.SHA256())
            .sign(
                serialization.Encoding.SMIME,
                [pkcs7.PKCS7Options.Text, pkcs7.PKCS7Options.DetachedSignature],
            )
        )
        return signed.decode("ascii")


class AMSSender(LoggingConfigurable):
    url = Unicode(
        "",
        config=True,
        help="""ARGO AMS base URL, e.g. https://msg.argo.grnet.gr ('' = off). Needs
        ``cert_file`` and ``key_file`` (every message is signed) and ``token``.""",
    )
    project = Unicode("accounting", config=True, help="AMS project.")
    topic = Unicode("eu-egi-cloud-accounting", config=True, help="AMS topic for cloud records.")
    token = Unicode("", config=True, help="AMS API token (secret: never logged).")
    cert_file = Unicode(
        "",
        config=True,
        help="""PEM host certificate that signs every message (S/MIME, as ssmsend signs):
        its DN must be the Host DN of the site's ``eu.egi.cloud.accounting`` service in GOCDB,
        or APEL's receiver rejects the messages. Read again at every send, so a renewed
        certificate needs no restart; one that expires within a day is refused.""",
    )
    key_file = Unicode(
        "",
        config=True,
        help="""Unencrypted PEM private key of ``cert_file`` (a secret: only its path is ever
        logged). Read again at every send.""",
    )
    timeout = Float(20, config=True, help="Timeout in seconds of one publish request.")
    max_retries = Integer(3, config=True, help="Retries of one message within one run.")
    backoff = Float(1.0, config=True, help="First retry delay in seconds (doubles each time).")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def configuration_problem(self) -> str | None:
        """Why an enabled sender cannot send, in one line naming the trait; None if it can."""
        if not self.enabled:
            return None
        if not self.cert_file or not self.key_file:
            missing = " and ".join(
                f"AMSSender.{n}" for n in ("cert_file", "key_file") if not getattr(self, n)
            )
            return (
                f"AMSSender.url is set but {missing} is not: APEL rejects unsigned messages "
                "(the host certificate registered in GOCDB signs them)"
            )
        if not self.token:
            return "AMSSender.url is set but AMSSender.token is not"
        try:
            Signer.load(self.cert_file, self.key_file)
        except SigningError as e:
            return str(e)
        return None

    def publish_url(self) -> str:
        return f"{self.url.rstrip('/')}/v1/projects/{self.project}/topics/{self.topic}:publish"

    async def publish(self, client: httpx.AsyncClient, name: str, signed: str) -> str:
        """Publish one signed message; its AMS id, or AMSError for anything but a clear ack."""
        body = {
            "messages": [
                {
                    "attributes": {"empaid": name},
                    "data": base64.b64encode(signed.encode("utf-8")).decode("ascii"),
                }
            ]
        }
        try:
            response = await client.post(self.publish_url(), json=body)
        except httpx.HTTPError as e:
            raise AMSError(f"AMS unreachable: {type(e).__name__}") from e
        if response.status_code != 200:
            raise AMSError(f"AMS answered HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            ids = response.json()["messageIds"]
        except (ValueError, KeyError, TypeError) as e:
            raise AMSError(f"garbage answer from AMS: {response.text[:200]!r}") from e
        if not (isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], str | int)):
            raise AMSError(f"garbage answer from AMS: {response.text[:200]!r}")
        return str(ids[0])

    async def _publish_with_retries(
        self, client: httpx.AsyncClient, name: str, signed: str
    ) -> str | None:
        """The message id AMS acknowledged, or None once every attempt failed."""
        try:
            return await retry(
                lambda: self.publish(client, name, signed),
                attempts=self.max_retries + 1,
                backoff=self.backoff,
                retry_on=AMSError,
                on_failure=lambda n, e: self.log.warning(
                    "AMS: message %s, attempt %d: %s", name, n, e
                ),
            )
        except AMSError:
            return None

    async def send_queue(self, queue: OutgoingQueue) -> SendOutcome:
        """Sign and send every message of the queue; keep (unlocked) what was not acknowledged.

        SigningError before anything is sent when the certificate cannot sign (the queue is
        kept for the next run, as ssmsend keeps it).
        """
        outcome = SendOutcome()
        if not self.token:
            raise AMSError("AMSSender.token is not set")
        if not self.cert_file or not self.key_file:
            raise SigningError("AMSSender.cert_file and AMSSender.key_file must be set")
        signer = await asyncio.to_thread(Signer.load, self.cert_file, self.key_file)
        async with httpx.AsyncClient(
            timeout=self.timeout, headers={"x-api-key": self.token}
        ) as client:
            for name, message in queue.locked():
                try:
                    signed = await asyncio.to_thread(signer.sign, message)
                except Exception:
                    queue.unlock(name)
                    raise
                acked = await self._publish_with_retries(client, name, signed)
                if acked is None:
                    queue.unlock(name)  # kept for the next run
                    outcome.failed += 1
                else:
                    queue.remove(name)
                    outcome.sent += 1
                    self.log.debug("AMS: message %s acknowledged as %s", name, acked)
        if outcome.sent or outcome.failed:
            self.log.info(
                "AMS: %d messages signed as %s sent, %d kept for later",
                outcome.sent,
                signer.subject,
                outcome.failed,
            )
        return outcome
