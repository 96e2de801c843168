"""Expiry maths and provider-answer classification (no network)."""

import asyncio
import json

import jwt
import pytest

from egi_notebooks.auth.refresh import (
    InvalidGrant,
    ProviderError,
    SingleFlight,
    compute_expiry,
    effective_leeway,
    needs_refresh,
    parse_token_response,
)


def test_expiry_from_expires_in_and_jwt_exp_takes_the_earlier():
    assert compute_expiry({"expires_in": 3600}, now=1000) == 4600
    assert compute_expiry({"expires_in": "60"}, now=1000) == 1060
    token = jwt.encode({"exp": 2000}, "k" * 32, algorithm="HS256")
    assert compute_expiry({"expires_in": 3600, "access_token": token}, now=1000) == 2000
    assert compute_expiry({"access_token": "opaque"}, now=1000) is None
    assert compute_expiry({"expires_in": True}, now=1000) is None
    assert compute_expiry({"expires_in": -5}, now=1000) is None


def test_refresh_window_uses_leeway_capped_at_half_the_lifetime():
    assert effective_leeway(600, 3600) == 600
    assert effective_leeway(600, 30) == 15
    state = {"expires_at": 1000.0, "expires_in": 3600}
    assert not needs_refresh(state, 600, now=399)
    assert needs_refresh(state, 600, now=400)
    short = {"expires_at": 1000.0, "expires_in": 30}
    assert not needs_refresh(short, 600, now=984)
    assert needs_refresh(short, 600, now=985)
    assert needs_refresh({}, 600, now=0)  # unknown expiry: refresh


def test_token_responses_are_classified_without_leaking_values():
    ok = parse_token_response(200, json.dumps({"access_token": "AT"}).encode())
    assert ok["access_token"] == "AT"
    with pytest.raises(InvalidGrant):
        parse_token_response(400, b'{"error": "invalid_grant"}')
    for status, body in [
        (200, b"<html>oops</html>"),
        (502, b"<html>bad gateway</html>"),
        (500, b"{}"),
        (200, b'{"refresh_token": "SECRET"}'),
        (400, b'{"error": "temporarily_unavailable"}'),
    ]:
        with pytest.raises(ProviderError) as info:
            parse_token_response(status, body, "text/html")
        assert "SECRET" not in str(info.value)


async def test_single_flight_serialises_one_key_and_forgets_idle_keys():
    flight = SingleFlight()
    inside = 0
    peak = 0

    async def work(key):
        nonlocal inside, peak
        async with flight.hold(key):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(work("alice") for _ in range(20)))
    assert peak == 1
    assert len(flight) == 0
    # different users never wait for each other: each holds its lock until the other is in
    a_in, b_in = asyncio.Event(), asyncio.Event()

    async def meet(key, mine, theirs):
        async with flight.hold(key):
            mine.set()
            await asyncio.wait_for(theirs.wait(), 5)

    await asyncio.gather(meet("a", a_in, b_in), meet("b", b_in, a_in))
