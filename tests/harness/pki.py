"""A test CA and host certificates, and APEL's receiving end of an S/MIME signed message.

``verify_like_apel`` does what APEL's receiver (``ssmreceive``) does with a message pulled from
AMS, with the real ``openssl`` binary: verify the S/MIME signature and the signer's chain to
the CA, take the signer's DN, and strip the signed part's MIME header (the ``text/plain`` header
``openssl smime -sign -text`` adds) from the content.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def require_openssl() -> str:
    """The openssl binary; its absence fails under CI, skips elsewhere."""
    path = shutil.which("openssl")
    if path is None:
        message = "the openssl binary is needed (Debian package openssl)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))  # fmt: skip
    path.chmod(0o600)


@dataclass
class HostPKI:
    ca_file: Path
    cert_file: Path
    key_file: Path
    subject: str  # the host certificate's DN, RFC 4514 (cryptography's spelling)
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey

    def host_cert(self, directory: Path, name: str, *, not_before: datetime.datetime,
                  not_after: datetime.datetime,
                  key: rsa.RSAPrivateKey | None = None) -> tuple[Path, Path]:  # fmt: skip
        """Another host certificate of this CA (e.g. one about to expire): its (cert, key)."""
        key = key or _key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Site"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.example.org"),
        ])  # fmt: skip
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # an IGTF host certificate: TLS server and client, no S/MIME purpose
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )  # fmt: skip
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"{name}.example.org")]), critical=False
            )  # fmt: skip
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{name}cert.pem", directory / f"{name}key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_file)
        return cert_file, key_file


def make_host_pki(directory: Path, name: str = "host") -> HostPKI:
    """A CA and a host certificate of it valid for 30 days, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Test IGTF CA")])  # fmt: skip
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False)  # fmt: skip
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki = HostPKI(ca_file, Path(), Path(), "", ca_cert, ca_key)
    pki.cert_file, pki.key_file = pki.host_cert(
        directory, name, not_before=now - DAY, not_after=now + 30 * DAY
    )
    cert = x509.load_pem_x509_certificate(pki.cert_file.read_bytes())
    pki.subject = cert.subject.rfc4514_string()
    return pki


class NotVerified(AssertionError):
    pass


@dataclass
class Received:
    content: str  # the APEL message, line ends as APEL's receiver reads them (\n)
    signer: str  # the signer's DN, RFC 4514


def verify_like_apel(signed: str, ca_file: Path, workdir: Path) -> Received:
    """Verify ``signed`` with ``openssl smime -verify`` against ``ca_file``; NotVerified if not.

    ``-purpose any``: host certificates are not S/MIME certificates (APEL's receiver checks
    the signature with ``-noverify`` and the chain with ``openssl verify``, the same two
    checks).
    """
    openssl = require_openssl()
    workdir.mkdir(parents=True, exist_ok=True)
    signer_file = workdir / "signer.pem"
    signer_file.unlink(missing_ok=True)
    result = subprocess.run(
        [openssl, "smime", "-verify", "-CAfile", str(ca_file), "-purpose", "any",
         "-signer", str(signer_file)],
        input=signed.encode(), capture_output=True, timeout=60,
    )  # fmt: skip
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0 or "Verification successful" not in stderr:
        raise NotVerified(f"openssl smime -verify: {stderr.strip()}")
    # the signed part: its MIME header, a blank line, the message (CRLF, canonical form)
    text = result.stdout.decode().replace("\r\n", "\n")
    header, sep, body = text.partition("\n\n")
    if not sep or header.strip().lower() != "content-type: text/plain":
        raise NotVerified(f"signed part is not the text/plain part ssmsend makes: {text[:200]!r}")
    signer = x509.load_pem_x509_certificate(signer_file.read_bytes())
    return Received(content=body, signer=signer.subject.rfc4514_string())
