"""The pieces of ``/hub/jwt_login`` that need no hub: access-token verification (JWT by the
provider's keys, against an in-memory JWKS), audience rules and the derived hub token. The
whole exchange runs end to end in tests/e2e/test_jwt_login_e2e.py."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado import web

from egi_notebooks.auth.jwt_login import (
    BearerError,
    JWTLoginHandler,
    audience_ok,
    derived_hub_token,
    is_jwt,
    token_fingerprint,
)

ISSUER = "https://idp.example/auth/realms/egi"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeMetadata:
    issuer = ISSUER

    def __init__(self) -> None:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
        self.keys = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.refreshes = 0

    async def jwks(self, refresh: bool = False) -> dict:
        self.refreshes += refresh
        return self.keys


class Handler(JWTLoginHandler):
    """The handler's verification methods without a running hub."""

    def __init__(
        self, audiences: list[str] | None = None, accept_hub_client: bool = False
    ) -> None:  # no tornado set-up
        self._authn = SimpleNamespace(
            metadata=FakeMetadata(),
            client_id="hub",
            jwt_login_audiences=audiences or [],
            jwt_login_accept_hub_client_tokens=accept_hub_client,
        )

    @property
    def authn(self):
        return self._authn

    @property
    def log(self):
        return logging.getLogger("test")


def access_token(key=KEY, kid="k1", typ="at+jwt", **claims) -> str:
    """A JWT access token that a command-line client ``cli`` got for the hub's audience."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": "s1",
        "aud": "hub",
        "azp": "cli",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid, **({"typ": typ} if typ else {})}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


async def test_a_valid_jwt_access_token_gives_its_claims():
    claims = await Handler().verify_access_token(access_token(voperson_id="a@egi.eu"))
    assert claims["sub"] == "s1" and claims["voperson_id"] == "a@egi.eu"


@pytest.mark.parametrize(
    "token, words",
    [
        (lambda: access_token(key=OTHER_KEY), "not valid"),
        (lambda: access_token(kid="unknown"), "not signed by a known key"),
        (lambda: access_token(iss="https://evil.example/"), "another issuer"),
        (lambda: access_token(exp=int(time.time()) - 5), "expired"),
        (lambda: access_token(aud="other", azp="other"), "not issued for this hub"),
        (lambda: access_token(aud=None), "not issued for this hub"),
        (lambda: access_token(typ=None), "not an access token"),
        (lambda: access_token(sub=None), "not valid"),
        (lambda: jwt.encode({"sub": "s1", "iss": ISSUER}, "s" * 32, algorithm="HS256"), "HS256"),
    ],
)
async def test_jwts_that_must_not_log_in(token, words):
    with pytest.raises(BearerError) as caught:
        await Handler().verify_access_token(token())
    assert caught.value.status_code == 401
    assert words.lower() in caught.value.log_message.lower()
    assert caught.value.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


async def test_keycloak_typ_claim_counts_as_an_access_token():
    token = access_token(typ="JWT")
    with pytest.raises(BearerError, match="not an access token"):
        await Handler().verify_access_token(token)
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": "s1", "azp": "cli", "exp": now + 60, "typ": "Bearer"}
    keycloak = jwt.encode(payload, KEY, algorithm="RS256", headers={"kid": "k1", "typ": "JWT"})
    assert (await Handler(audiences=["cli"]).verify_access_token(keycloak))["azp"] == "cli"


async def test_an_unknown_kid_refetches_the_keys_once():
    handler = Handler()
    with pytest.raises(BearerError):
        await handler.verify_access_token(access_token(kid="rotated"))
    assert handler.authn.metadata.refreshes == 1


async def test_configured_audiences_replace_the_client_id():
    handler = Handler(audiences=["cli"])
    assert await handler.verify_access_token(access_token(aud="cli"))
    with pytest.raises(BearerError, match="not issued for this hub"):
        await handler.verify_access_token(access_token(aud="hub"))


def test_audience_rules():
    assert audience_ok({"aud": "hub"}, {"hub"})
    assert audience_ok({"aud": ["x", "hub"]}, {"hub"})
    assert audience_ok({"client_id": "hub"}, {"hub"})  # introspection answers
    assert audience_ok({"azp": "hub"}, {"hub"})  # no aud: the client it was issued to
    assert not audience_ok({"aud": ["x"], "azp": "y"}, {"hub"})
    assert not audience_ok({}, {"hub"})
    # a token for another API (its aud) is that API's, whoever it was issued to: that API
    # could otherwise replay it here
    assert not audience_ok({"aud": "account", "azp": "hub"}, {"hub"})
    assert not audience_ok({"aud": ["storage-api"], "client_id": "hub"}, {"hub"})


# ----- the hub's own client: the tokens the hub hands to notebooks ---------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"azp": "hub"},  # Keycloak: the hub's login token
        {"azp": "hub", "aud": "hub"},
        {"azp": None, "client_id": "hub"},  # RFC 9068
        {"azp": None},  # no client named, aud only the hub's client: the hub's
    ],
)
async def test_the_hubs_own_tokens_do_not_log_in(claims):
    with pytest.raises(BearerError, match="issued to the hub itself") as caught:
        await Handler().verify_access_token(access_token(**claims))
    assert caught.value.status_code == 401


async def test_the_hubs_own_tokens_log_in_when_the_operator_opts_in():
    handler = Handler(accept_hub_client=True)
    assert (await handler.verify_access_token(access_token(azp="hub")))["azp"] == "hub"
    # still not with another API's audience
    with pytest.raises(BearerError, match="not issued for this hub"):
        await handler.verify_access_token(access_token(azp="hub", aud="storage-api"))


async def test_a_token_of_another_client_for_the_hubs_audience_logs_in():
    # what Check-in gives a client registered with the hub as audience, or a token exchange
    # for the hub's audience: aud names the hub, azp the client
    claims = await Handler().verify_access_token(access_token(aud=["hub"], azp="cli"))
    assert claims["azp"] == "cli"


def test_derived_hub_token_is_stable_secret_and_per_access_token():
    a = derived_hub_token(b"s" * 32, "access-1")
    assert a == derived_hub_token(b"s" * 32, "access-1")
    assert a != derived_hub_token(b"s" * 32, "access-2")
    assert a != derived_hub_token(b"t" * 32, "access-1")
    assert len(a) == 64 and "access" not in a
    fingerprint = token_fingerprint("access-1")
    assert len(fingerprint) == 16 and fingerprint not in a


def test_only_compact_jws_are_taken_for_jwts():
    assert is_jwt(access_token())
    assert not is_jwt("opaque-token-value")
    assert not is_jwt("a.b.c")


def test_bearer_error_is_a_401_http_error():
    error = BearerError("The access token has expired.")
    assert isinstance(error, web.HTTPError) and error.status_code == 401
