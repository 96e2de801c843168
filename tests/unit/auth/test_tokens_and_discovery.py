"""id_token verification, discovery overrides and auth_state handling on refresh (no network:
the provider's documents are served by an in-memory fetcher)."""

from __future__ import annotations

import json
import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.auth.discovery import DiscoveryError, IdTokenError, OIDCMetadata
from tests.unit.auth.helpers import make_authenticator

ISSUER = "https://idp.example/auth/realms/egi"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(key=KEY, kid="k1") -> dict:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


def document(**overrides) -> dict:
    doc = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "jwks_uri": f"{ISSUER}/certs",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "end_session_endpoint": f"{ISSUER}/logout",
    }
    doc.update(overrides)
    return doc


class Fetcher:
    def __init__(self, responses: dict[str, tuple[int, bytes]]):
        self.responses = responses
        self.calls: list[str] = []

    async def __call__(self, url: str) -> tuple[int, bytes]:
        self.calls.append(url)
        if url not in self.responses:
            raise ConnectionError("connection refused")
        return self.responses[url]


def served(doc=None, keys=None) -> Fetcher:
    return Fetcher(
        {
            DISCOVERY: (200, json.dumps(doc or document()).encode()),
            f"{ISSUER}/certs": (200, json.dumps(keys or jwks()).encode()),
        }
    )


def id_token(key=KEY, kid="k1", alg="RS256", **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "hub", "sub": "s", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def metadata(fetcher: Fetcher, **kw) -> OIDCMetadata:
    return OIDCMetadata(ISSUER, fetcher, logging.getLogger("test"), backoff=0.01, **kw)


async def test_valid_id_token_is_accepted_with_nonce():
    meta = metadata(served())
    claims = await meta.verify_id_token(id_token(nonce="n1"), "hub", nonce="n1")
    assert claims["sub"] == "s"


@pytest.mark.parametrize(
    "token, reason",
    [
        (id_token(aud="someone-else"), "(?i)audience"),
        (id_token(iss="https://evil.example"), "(?i)issuer"),
        (id_token(exp=int(time.time()) - 3600), "(?i)expired"),
        (id_token(nonce="other"), "nonce"),
        (id_token(key=OTHER_KEY), "Signature"),
        (jwt.encode({"iss": ISSUER, "aud": "hub"}, "s" * 32, algorithm="HS256"), "algorithm"),
        ("not-a-jwt", "not a JWT"),
        ("x" * 70_000, "compact JWT"),
    ],
)
async def test_bad_id_tokens_are_refused(token, reason):
    with pytest.raises(IdTokenError, match=reason):
        await metadata(served()).verify_id_token(token, "hub", nonce="n1")


async def test_unknown_kid_refetches_keys_once():
    fetcher = served()
    meta = metadata(fetcher)
    await meta.verify_id_token(id_token(), "hub")
    with pytest.raises(IdTokenError, match="no signing key"):
        await meta.verify_id_token(id_token(kid="rotated"), "hub")
    assert fetcher.calls.count(f"{ISSUER}/certs") == 1  # refetch is rate limited


async def test_discovery_is_cached_and_failures_explain_themselves():
    fetcher = served()
    meta = metadata(fetcher)
    await meta.get()
    await meta.get()
    assert fetcher.calls.count(f"{ISSUER}/.well-known/openid-configuration") == 1
    with pytest.raises(DiscoveryError, match="cannot reach"):
        await metadata(Fetcher({}), retries=1).get()
    wrong = metadata(served(document(issuer="https://other")), retries=0)
    with pytest.raises(DiscoveryError, match="names issuer"):
        await wrong.get()
    html = Fetcher({f"{ISSUER}/.well-known/openid-configuration": (200, b"<html>")})
    with pytest.raises(DiscoveryError, match="did not return JSON"):
        await metadata(html, retries=0).get()


@pytest.fixture
def authenticator(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)

    def make(**traits) -> EGICheckinAuthenticator:
        auth = make_authenticator(**{"oidc_issuer": ISSUER, "client_id": "hub", **traits})
        auth.metadata._fetch = served()
        return auth

    return make


async def test_discovery_fills_urls_but_explicit_ones_win(authenticator):
    auth = authenticator(token_url="https://override.example/token")
    await auth.ensure_endpoints()
    assert auth.authorize_url == f"{ISSUER}/auth"
    assert auth.userdata_url == f"{ISSUER}/userinfo"
    assert auth.token_url == "https://override.example/token"
    assert await auth.get_endpoint("revocation_endpoint") == f"{ISSUER}/revoke"


class FakeUser:
    name = "u@egi.eu"
    spawners: dict = {}


async def test_refresh_keeps_missing_id_token_and_foreign_keys(authenticator):
    auth = authenticator(userinfo_on_refresh="never", allowed_vos={"vo.a"})
    state = {
        "access_token": "old-at",
        "refresh_token": "old-rt",
        "id_token": "old-idt",
        "oauth_user": {
            "eduperson_entitlement": ["urn:mace:egi.eu:group:vo.a:role=member#aai.egi.eu"]
        },
        "added_by_someone_else": {"keep": True},
    }
    model = await auth.auth_model_from_refresh(
        FakeUser(), state, {"access_token": "new-at", "expires_in": 60, "token_type": "Bearer"}
    )
    new = model["auth_state"]
    assert new["access_token"] == "new-at"
    assert new["refresh_token"] == "old-rt"  # no rotation in the answer: keep the old one
    assert new["id_token"] == "old-idt"  # no id_token in the answer: keep the old one
    assert new["added_by_someone_else"] == {"keep": True}
    assert new["vos"] == ["vo.a"] and 50 < new["expires_at"] - time.time() <= 60
    rotated = await auth.auth_model_from_refresh(
        FakeUser(), state, {"access_token": "a2", "refresh_token": "rt2", "expires_in": 60}
    )
    assert rotated["auth_state"]["refresh_token"] == "rt2"


async def test_refresh_claims_come_from_the_verified_id_token(authenticator):
    auth = authenticator(allowed_vos={"vo.a"})
    fresh = id_token(eduperson_entitlement=["urn:mace:egi.eu:group:vo.b:role=member#aai.egi.eu"])
    model = await auth.auth_model_from_refresh(
        FakeUser(),
        {"access_token": "a", "refresh_token": "r", "oauth_user": {"eduperson_entitlement": []}},
        {"access_token": "a2", "id_token": fresh, "expires_in": 60},
    )
    assert model["auth_state"]["vos"] == ["vo.b"]
    assert not await auth.check_allowed(FakeUser.name, model)
    forged = id_token(key=OTHER_KEY, eduperson_entitlement=["urn:mace:egi.eu:group:vo.a"])
    with pytest.raises(IdTokenError):
        await auth.auth_model_from_refresh(
            FakeUser(), {"access_token": "a"}, {"access_token": "a2", "id_token": forged}
        )
