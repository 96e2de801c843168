"""The provider's RS256 signing key, its JWKS and JWT signing/verification."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .config import ConfigError


class SigningKey:
    """One RSA key; generated at start (2048 bits) unless a PEM file is given."""

    def __init__(self, key_file: str | None = None) -> None:
        if key_file:
            try:
                key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
            except (OSError, ValueError, TypeError) as e:
                raise ConfigError(
                    f"signing_key_file {key_file!r}: not a PEM private key ({e})"
                ) from None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ConfigError(f"signing_key_file {key_file!r}: not an RSA key")
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key = key
        self.public_key = key.public_key()
        jwk = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        self.kid = self._thumbprint(jwk)
        self.jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @staticmethod
    def _thumbprint(jwk: dict[str, Any]) -> str:
        # RFC 7638: SHA-256 over the required members in lexicographic order
        canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return jwt.encode(
            claims, self.private_key, algorithm="RS256", headers={"kid": self.kid, "typ": typ}
        )

    def verify_id_token(self, token: str, issuer: str) -> dict[str, Any]:
        """Claims of an id_token this provider issued; expiry is not checked (id_token_hint)."""
        return jwt.decode(
            token,
            self.public_key,
            algorithms=["RS256"],
            issuer=issuer,
            options={"verify_exp": False, "verify_aud": False, "require": ["iss", "sub", "aud"]},
        )
