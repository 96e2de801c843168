"""Our fault-injecting OIDC provider (tests/harness/faulty_provider), tested as a real process
over HTTP."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from egi_notebooks.auth.discovery import ENDPOINT_KEYS
from tests.harness.provider import (
    DEFAULT_CONFIG,
    DEFAULT_POST_LOGOUT_URI,
    DEFAULT_REDIRECT_URI,
    OURS,
    ROOT,
    ProviderProcess,
    pkce_pair,
    provider_factory,  # noqa: F401 (fixture)
)

# what this file tests: our provider's faults, JWT access tokens and admin API
pytestmark = pytest.mark.provider("ours")

T = 5.0  # seconds: every HTTP call here is local
HTTP = httpx.Client(timeout=T)  # one client: making one costs tens of milliseconds


@pytest.fixture(scope="module")
def provider():
    with ProviderProcess(OURS).start(copy.deepcopy(DEFAULT_CONFIG)) as p:
        yield p


@pytest.fixture(autouse=True)
def clean(request):
    """Tests share one provider: undo faults and settings whatever the test did."""
    yield
    if "provider" in request.fixturenames:
        p = request.getfixturevalue("provider")
        p.set_fault("none")
        p.settings(
            access_token_lifetime=3600,
            refresh_token_lifetime=86400,
            id_token_lifetime=3600,
            code_lifetime=60,
            userinfo_only_claims=[],
        )
        p.set_client_secret(DEFAULT_CONFIG["clients"][0]["client_secret"])


def token_call(p: ProviderProcess, data: dict, basic: bool = True, secret: str | None = None):
    secret = secret or p.client_secret
    if basic:
        return HTTP.post(p.endpoint("token"), data=data, auth=(p.client_id, secret), timeout=T)
    data = {**data, "client_id": p.client_id, "client_secret": secret}
    return HTTP.post(p.endpoint("token"), data=data, timeout=T)


def refresh(p: ProviderProcess, refresh_token: str, basic: bool = True) -> httpx.Response:
    return token_call(p, {"grant_type": "refresh_token", "refresh_token": refresh_token}, basic)


def verify_id_token(p: ProviderProcess, id_token: str, nonce: str | None = None) -> dict:
    jwks = HTTP.get(p.endpoint("jwks"), timeout=T).json()
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims = jwt.decode(
        id_token, key, algorithms=["RS256"], audience=p.client_id, issuer=p.issuer, leeway=0
    )
    assert claims.get("nonce") == nonce
    return claims


def userinfo(p: ProviderProcess, access_token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    return HTTP.get(p.endpoint("userinfo"), headers=headers, timeout=T)


def test_discovery_document(provider):
    doc = HTTP.get(provider.endpoint("discovery"), timeout=T).json()
    assert doc["issuer"] == provider.issuer == f"http://127.0.0.1:{provider.port}/auth/realms/egi"
    for name in ENDPOINT_KEYS:  # every endpoint the authenticator reads from discovery
        assert doc[name].startswith(provider.issuer + "/protocol/openid-connect/")
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert doc["code_challenge_methods_supported"] == ["S256", "plain"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"offline_access", "eduperson_entitlement", "entitlements", "voperson_id"} <= set(
        doc["scopes_supported"]
    )
    assert {"eduperson_entitlement", "voperson_id", "sub"} <= set(doc["claims_supported"])


def test_code_flow_with_pkce_s256(provider):
    verifier, challenge = pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    # a wrong verifier is refused, and the code is spent by the attempt
    code = provider.get_code("alice", nonce="n-1", state="s-1", **pkce)
    grant = {"grant_type": "authorization_code", "redirect_uri": DEFAULT_REDIRECT_URI}
    r = token_call(provider, {**grant, "code": code, "code_verifier": pkce_pair()[0]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = token_call(provider, {**grant, "code": code, "code_verifier": verifier})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # missing verifier refused too
    code = provider.get_code("alice", nonce="n-2", **pkce)
    r = token_call(provider, {**grant, "code": code})
    assert r.json()["error"] == "invalid_grant"

    r = provider.authorize("alice", nonce="n-3", state="s&3", **pkce)
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == DEFAULT_REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == ["s&3"]
    r = token_call(provider, {**grant, "code": query["code"][0], "code_verifier": verifier})
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert "offline_access" in tokens["scope"].split() and tokens["refresh_token"]
    claims = verify_id_token(provider, tokens["id_token"], nonce="n-3")
    assert claims["voperson_id"] == "alice@egi.eu"
    assert claims["exp"] > claims["iat"] >= claims["auth_time"] - 1
    assert (
        "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
        in (claims["eduperson_entitlement"])
    )
    assert userinfo(provider, tokens["access_token"]).json()["sub"] == claims["sub"]

    # the code reused: refused, and what it issued is revoked
    r = token_call(provider, {**grant, "code": query["code"][0], "code_verifier": verifier})
    assert r.json()["error"] == "invalid_grant"
    assert userinfo(provider, tokens["access_token"]).status_code == 401
    assert refresh(provider, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_pkce_plain_and_redirect_uri_checked(provider):
    verifier = pkce_pair()[0]
    code = provider.get_code("bob", code_challenge=verifier, code_challenge_method="plain")
    grant = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    r = token_call(provider, {**grant, "redirect_uri": "http://127.0.0.1:8000/other"})
    assert r.json()["error"] == "invalid_grant"
    code = provider.get_code("bob", code_challenge=verifier, code_challenge_method="plain")
    grant["code"] = code
    r = token_call(provider, {**grant, "redirect_uri": DEFAULT_REDIRECT_URI})
    assert r.status_code == 200, r.text


def test_authorization_errors(provider):
    r = provider.authorize("alice", password="wrong")
    assert r.status_code == 200 and "Invalid username or password" in r.text
    # unregistered redirect_uri or client: an HTML error page, never a redirect there
    for params in (
        {"redirect_uri": "http://evil.example/cb"},
        {"redirect_uri": DEFAULT_REDIRECT_URI + "/x"},
        {"client_id": "nobody"},
    ):
        r = provider.authorize("alice", **params)
        assert r.status_code == 400 and "text/html" in r.headers["content-type"]
        assert "location" not in r.headers
    # other errors go back to the client with error=
    for params, error in (
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"code_challenge": "x" * 43, "code_challenge_method": "S512"}, "invalid_request"),
        ({"prompt": "none"}, "login_required"),
    ):
        r = provider.authorize("alice", state="st", **params)
        assert r.status_code == 302
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["error"] == [error] and query["state"] == ["st"]


def test_refresh_rotation(provider):
    provider.reset_stats()
    first = provider.login_tokens("alice")
    r = refresh(provider, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    # the old refresh token is spent; the new one still works after the failed reuse
    r = refresh(provider, first["refresh_token"])
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token unknown, used or revoked",
    }
    r = refresh(provider, second["refresh_token"])
    assert r.status_code == 200
    stats = provider.stats()
    assert stats["token"] == {"authorization_code": 1, "refresh_token": 3}
    assert stats["refresh_by_user"] == {"alice": 3} and stats["invalid_grant"] == 1
    assert provider.token_counts("alice")["refresh"] >= 1


def test_refresh_client_auth_methods_and_id_token(provider):
    tokens = provider.login_tokens("bob", nonce="nb")
    for basic in (True, False, True):
        r = refresh(provider, tokens["refresh_token"], basic=basic)
        assert r.status_code == 200, r.text
        tokens = r.json()
        claims = verify_id_token(provider, tokens["id_token"])  # no nonce on refresh
        assert claims["voperson_id"] == "bob@egi.eu"
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    for basic in (True, False):
        r = token_call(provider, data, basic=basic, secret="wrong")
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = HTTP.post(provider.endpoint("token"), data=data, timeout=T)
    assert r.status_code == 401
    assert refresh(provider, tokens["refresh_token"]).status_code == 200  # not spent by those


def test_no_offline_access_no_refresh_token(provider):
    tokens = provider.login_tokens("alice", scope="openid profile eduperson_entitlement")
    assert "refresh_token" not in tokens and tokens["id_token"]
    assert "offline_access" not in tokens["scope"]


def test_revocation_then_introspection(provider):
    tokens = provider.login_tokens("alice")
    info = provider.introspect(tokens["access_token"])
    assert info["active"] is True and info["username"] == "alice"
    assert info["client_id"] == provider.client_id and info["token_type"] == "Bearer"
    assert info["exp"] - info["iat"] == 3600
    assert provider.introspect(tokens["refresh_token"])["token_type"] == "Refresh"
    revoke = provider.endpoint("revocation")
    auth = (provider.client_id, provider.client_secret)
    r = HTTP.post(revoke, data={"token": tokens["access_token"]}, auth=auth, timeout=T)
    assert r.status_code == 200
    assert provider.introspect(tokens["access_token"]) == {"active": False}
    assert userinfo(provider, tokens["access_token"]).status_code == 401
    assert provider.introspect(tokens["refresh_token"])["active"] is True
    # unknown tokens: 200 (RFC 7009); unauthenticated clients: 401
    r = HTTP.post(revoke, data={"token": "nonsense"}, auth=auth, timeout=T)
    assert r.status_code == 200
    r = HTTP.post(revoke, data={"token": tokens["refresh_token"]}, timeout=T)
    assert r.status_code == 401
    assert provider.introspect(tokens["refresh_token"])["active"] is True


def test_revoking_refresh_token_kills_its_access_tokens(provider):
    first = provider.login_tokens("admin")
    second = refresh(provider, first["refresh_token"]).json()
    data = {
        "token": second["refresh_token"],
        "token_type_hint": "refresh_token",
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
    }
    assert HTTP.post(provider.endpoint("revocation"), data=data, timeout=T).status_code == 200
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert provider.introspect(token) == {"active": False}
    assert userinfo(provider, second["access_token"]).status_code == 401
    assert refresh(provider, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert provider.token_counts("admin") == {"access": 0, "refresh": 0}


def test_tokens_expire_exactly(provider):
    provider.settings(access_token_lifetime=1, refresh_token_lifetime=1.5, id_token_lifetime=1)
    tokens = provider.login_tokens("alice")
    issued = time.time()  # the token expires before issued + 1: no tolerance after that
    assert tokens["expires_in"] == 1 and tokens["refresh_expires_in"] == 1.5
    assert userinfo(provider, tokens["access_token"]).status_code == 200
    time.sleep(max(0.0, issued + 1.02 - time.time()))
    r = userinfo(provider, tokens["access_token"])
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert provider.introspect(tokens["access_token"]) == {"active": False}
    # the refresh token still lives for another half second, then it is gone
    renewed = refresh(provider, tokens["refresh_token"]).json()
    renewed_at = time.time()
    assert userinfo(provider, renewed["access_token"]).status_code == 200
    time.sleep(max(0.0, renewed_at + 1.52 - time.time()))
    assert refresh(provider, renewed["refresh_token"]).json()["error"] == "invalid_grant"


def test_claims_changed_at_run_time(provider):
    tokens = provider.login_tokens("bob")
    before = verify_id_token(provider, tokens["id_token"])
    new_entitlement = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
    provider.patch_claims("bob", {"eduperson_entitlement": [new_entitlement], "name": None})
    tokens = refresh(provider, tokens["refresh_token"]).json()
    claims = verify_id_token(provider, tokens["id_token"])
    assert claims["eduperson_entitlement"] == [new_entitlement] and "name" not in claims
    assert claims["sub"] == before["sub"]
    info = userinfo(provider, tokens["access_token"]).json()
    assert info["eduperson_entitlement"] == [new_entitlement]
    # PUT replaces all claims but keeps the subject
    provider.set_claims("bob", {"voperson_id": "bob@egi.eu", "eduperson_entitlement": []})
    claims = verify_id_token(
        provider, refresh(provider, tokens["refresh_token"]).json()["id_token"]
    )
    assert claims["eduperson_entitlement"] == [] and "email" not in claims
    assert claims["sub"] == before["sub"]
    provider.set_claims("bob", DEFAULT_CONFIG["users"]["bob"]["claims"])
    # a user created at run time can log in
    provider.set_claims("carol", {"voperson_id": "carol@egi.eu"}, password="pw")
    tokens = provider.login_tokens("carol", password="pw")
    assert verify_id_token(provider, tokens["id_token"])["voperson_id"] == "carol@egi.eu"


def test_claims_only_in_userinfo_as_on_checkin(provider):
    # Check-in puts entitlements and voperson_id in userinfo, never in the id_token
    provider.settings(userinfo_only_claims=["eduperson_entitlement", "voperson_id"])
    tokens = provider.login_tokens("alice")
    claims = verify_id_token(provider, tokens["id_token"])
    assert "eduperson_entitlement" not in claims and "voperson_id" not in claims
    assert claims["sub"] and claims["email"] == "alice@example.org"
    info = userinfo(provider, tokens["access_token"]).json()
    assert info["eduperson_entitlement"] and info["voperson_id"] == "alice@egi.eu"
    refreshed = refresh(provider, tokens["refresh_token"]).json()
    assert "eduperson_entitlement" not in verify_id_token(provider, refreshed["id_token"])
    with pytest.raises(RuntimeError, match="list of claim names"):
        provider.settings(userinfo_only_claims="eduperson_entitlement")
    with pytest.raises(RuntimeError, match="sub"):
        provider.settings(userinfo_only_claims=["sub"])


def test_entitlement_claim_names_of_demo_users():
    from egi_notebooks.demo.accounts import demo_users

    default = demo_users()["alice"]["claims"]
    assert default["eduperson_entitlement"] and "entitlements" not in default
    new = demo_users(entitlement_claims=["entitlements"])["alice"]["claims"]
    assert new["entitlements"] == default["eduperson_entitlement"]
    assert "eduperson_entitlement" not in new
    both = demo_users(entitlement_claims=["eduperson_entitlement", "entitlements"])["bob"]
    assert both["claims"]["eduperson_entitlement"] == both["claims"]["entitlements"]


def test_client_secret_rotated_at_run_time(provider):
    tokens = provider.login_tokens("alice")
    old = provider.client_secret
    provider.set_client_secret("rotated-secret")
    assert provider.client_secret == "rotated-secret"
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    for basic in (True, False):
        r = token_call(provider, data, basic=basic, secret=old)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # refused client authentication does not spend the refresh token
    r = token_call(provider, data, secret="rotated-secret")
    assert r.status_code == 200, r.text
    with pytest.raises(RuntimeError, match="client_secret"):
        provider.admin("PATCH", f"/_admin/clients/{provider.client_id}", {"client_secret": ""})
    with pytest.raises(RuntimeError, match="no client"):
        provider.admin("PATCH", "/_admin/clients/nobody", {"client_secret": "x"})


def test_end_session_redirects_only_to_registered_uris(provider):
    tokens = provider.login_tokens("alice")
    url = provider.endpoint("end_session")
    hint = tokens["id_token"]
    args = {"id_token_hint": hint, "post_logout_redirect_uri": DEFAULT_POST_LOGOUT_URI}
    r = HTTP.get(url, params={**args, "state": "bye"}, timeout=T)
    assert r.status_code == 302 and r.headers["location"] == DEFAULT_POST_LOGOUT_URI + "?state=bye"
    r = HTTP.get(url, params={**args, "post_logout_redirect_uri": "http://evil.example/"})
    assert r.status_code == 400 and "location" not in r.headers
    r = HTTP.get(url, params={**args, "id_token_hint": hint[:-4] + "AAAA"}, timeout=T)
    assert r.status_code == 400 and "location" not in r.headers
    r = HTTP.get(url, params={"post_logout_redirect_uri": DEFAULT_POST_LOGOUT_URI}, timeout=T)
    assert r.status_code == 400  # no hint, no client_id: cannot know the client
    r = HTTP.get(url, params={"client_id": provider.client_id, **args}, timeout=T)
    assert r.status_code == 302
    r = HTTP.get(url, timeout=T)
    assert r.status_code == 200 and "You are signed out" in r.text


def test_fault_modes(provider):
    discovery, token = provider.endpoint("discovery"), provider.endpoint("token")
    provider.set_fault("down", endpoints=["discovery"])
    with pytest.raises(httpx.TransportError):
        HTTP.get(discovery, timeout=T)
    provider.set_fault("garbage", endpoints=["discovery"])
    r = HTTP.get(discovery, timeout=T)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    provider.set_fault("html500")  # all endpoints
    r = HTTP.post(token, data={"grant_type": "refresh_token"}, timeout=T)
    assert r.status_code == 500 and "text/html" in r.headers["content-type"]
    assert provider.stats()["faulted"] >= 3  # the admin API is never faulted
    provider.set_fault("slow", delay=0.4, endpoints=["jwks"], count=1)
    start = time.monotonic()
    assert HTTP.get(provider.endpoint("jwks"), timeout=T).status_code == 200
    assert time.monotonic() - start >= 0.4
    start = time.monotonic()
    HTTP.get(provider.endpoint("jwks"), timeout=T)  # count=1: over
    assert time.monotonic() - start < 0.4
    assert HTTP.get(discovery, timeout=T).json()["issuer"] == provider.issuer
    provider.set_fault("down", endpoints=["token"])
    assert HTTP.get(discovery, timeout=T).status_code == 200  # only the token endpoint fails
    with pytest.raises(httpx.TransportError):
        HTTP.post(token, data={"grant_type": "refresh_token"}, timeout=T)


async def test_async_helpers(provider):
    await provider.areset_stats()
    await provider.aset_fault("slow", delay=0.1, endpoints=["userinfo"])
    fault = await provider.aadmin("GET", "/_admin/fault")
    assert fault["mode"] == "slow" and fault["endpoints"] == ["userinfo"]
    async with httpx.AsyncClient(timeout=T) as http:
        r = await http.get(provider.endpoint("userinfo"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    stats = await provider.astats()
    assert stats["userinfo"] == 1 and stats["faulted"] == 1
    assert (await provider.aintrospect("nonsense")) == {"active": False}


def test_admin_api_needs_the_token(provider, provider_factory):  # noqa: F811
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        r = HTTP.get(f"{provider.url}/_admin/stats", headers=headers, timeout=T)
        assert r.status_code == 403
        r = HTTP.put(
            f"{provider.url}/_admin/users/alice", json={"claims": {}}, headers=headers, timeout=T
        )
        assert r.status_code == 403
    with pytest.raises(RuntimeError, match="must be one of"):
        provider.set_fault("explode")
    with pytest.raises(RuntimeError, match="positive number"):
        provider.settings(access_token_lifetime=0)
    with pytest.raises(RuntimeError, match="password"):
        provider.set_claims("dave", {})  # a new user needs a password
    # no admin_token configured: no admin API at all
    config = copy.deepcopy(DEFAULT_CONFIG)
    del config["admin_token"]
    other = provider_factory(config)
    r = HTTP.get(f"{other.url}/_admin/stats", headers={"Authorization": "Bearer x"}, timeout=T)
    assert r.status_code == 404


def test_jwt_access_tokens_realm_path_and_key_file(provider_factory, tmp_path):  # noqa: F811
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    p = provider_factory(
        jwt_access_tokens=True,
        realm_path="/realms/test",
        access_token_lifetime=60,
        signing_key_file=str(tmp_path / "key.pem"),
    )
    assert p.issuer.endswith("/realms/test")
    published = HTTP.get(p.endpoint("jwks")).json()["keys"][0]
    assert jwt.PyJWK(published).key.public_numbers() == key.public_key().public_numbers()
    tokens = p.login_tokens("alice")
    jwks = jwt.PyJWKSet.from_dict(HTTP.get(p.endpoint("jwks"), timeout=T).json())
    claims = jwt.decode(
        tokens["access_token"], jwks.keys[0], algorithms=["RS256"], audience=p.client_id
    )
    assert claims["iss"] == p.issuer and claims["exp"] - claims["iat"] == 60
    assert userinfo(p, tokens["access_token"]).json()["voperson_id"] == "alice@egi.eu"


def test_bad_configuration_is_explained(provider_factory, tmp_path):  # noqa: F811
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["clients"][0]["redirect_uris"] = "http://not-a-list"
    with pytest.raises(RuntimeError, match=r"clients\[0\]\.redirect_uris must be a list"):
        provider_factory(config)
    path = tmp_path / "c.json"
    path.write_text("{not json")
    r = subprocess.run(
        [sys.executable, "-m", "tests.harness.faulty_provider", "--port", "0", "--config", path],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "is not valid JSON" in r.stderr


def test_bad_input_answers_cleanly_and_log_keeps_no_secrets(provider):
    tokens = provider.login_tokens("alice")
    HTTP.get(
        provider.endpoint("end_session"), params={"id_token_hint": tokens["id_token"]}, timeout=T
    )
    auth = (provider.client_id, provider.client_secret)
    token = provider.endpoint("token")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for kw, status, error in (
        (
            {"content": b"grant_type=\xff\xfe", "headers": form, "auth": auth},
            400,
            "invalid_request",
        ),
        ({"data": {}, "auth": auth}, 400, "invalid_request"),
        ({"data": {"grant_type": "password"}, "auth": auth}, 400, "unsupported_grant_type"),
        ({"data": {"grant_type": "refresh_token"}, "auth": auth}, 400, "invalid_request"),
        (
            {"data": {"grant_type": "refresh_token", "refresh_token": "x" * 100_000}, "auth": auth},
            400,
            "invalid_grant",
        ),
        (
            {"data": {"grant_type": "refresh_token"}, "headers": {"Authorization": "Basic !"}},
            401,
            "invalid_client",
        ),
    ):
        r = HTTP.post(token, timeout=T, **kw)
        assert (r.status_code, r.json()["error"]) == (status, error)
    r = HTTP.post(
        provider.endpoint("revocation"),
        data={"token": tokens["refresh_token"]},
        auth=auth,
        timeout=T,
    )
    assert r.status_code == 200
    log = provider.log()
    assert "/protocol/openid-connect/logout" in log  # the calls were logged...
    secrets = [tokens[k] for k in ("access_token", "refresh_token", "id_token")]
    for secret in (*secrets, provider.client_secret, provider.admin_token):
        assert secret not in log  # ...without token values or credentials


def test_authorization_codes_expire(provider):
    provider.settings(code_lifetime=0.3)
    code = provider.get_code("alice")
    time.sleep(0.35)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": DEFAULT_REDIRECT_URI}
    r = token_call(provider, data)
    assert r.status_code == 400 and r.json()["error_description"] == "authorization code expired"
