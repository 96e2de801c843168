"""The AARC-G002 grammar shared by the authenticator, the spawner and accounting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_notebooks.entitlements import (
    EntitlementTrust,
    choose_primary_vo,
    count_entitlement_values,
    issuer_defaults,
    matches_any,
    parse_entitlement,
    parse_entitlements,
    parse_pattern,
    vos_of,
)

CHECKIN = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
SUBGROUP = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:admins:role=manager#aai.egi.eu"
EOSC = "urn:geant:eosc-federation.eu:group:vo.eosc.eu:sub%3Agroup:role=member#aai.eosc.eu"


def test_parse_checkin_entitlement():
    e = parse_entitlement(CHECKIN)
    assert (e.namespace, e.vo, e.groups, e.role, e.authority) == (
        "urn:mace:egi.eu",
        "vo.notebooks.egi.eu",
        (),
        "member",
        "aai.egi.eu",
    )
    assert e.urn == CHECKIN


def test_parse_subgroup_and_percent_encoding():
    e = parse_entitlement(SUBGROUP)
    assert e.groups == ("admins",) and e.role == "manager"
    eosc = parse_entitlement(EOSC)
    assert eosc.namespace == "urn:geant:eosc-federation.eu"
    assert eosc.vo == "vo.eosc.eu" and eosc.groups == ("sub:group",)


@pytest.mark.parametrize(
    "junk",
    [
        None,
        42,
        "",
        "vo.notebooks.egi.eu",
        "urn:mace:egi.eu:group:",
        "http://x:group:y",
        "urn:mace:egi.eu:group::role=member",
        "x" * 5000,
        ["list"],
        {"a": 1},
    ],
)
def test_junk_is_skipped_not_raised(junk):
    assert parse_entitlement(junk) is None


def test_parse_entitlements_accepts_string_or_list_and_skips_junk():
    assert [e.vo for e in parse_entitlements(CHECKIN)] == ["vo.notebooks.egi.eu"]
    assert [e.vo for e in parse_entitlements([CHECKIN, 3, None, "junk", EOSC])] == [
        "vo.notebooks.egi.eu",
        "vo.eosc.eu",
    ]
    assert parse_entitlements({"not": "a list"}) == []


@pytest.mark.parametrize(
    "pattern, entitlement, expected",
    [
        ("vo.notebooks.egi.eu", CHECKIN, True),  # role omitted: any role
        ("vo.notebooks.egi.eu:role=member", CHECKIN, True),
        ("vo.notebooks.egi.eu:role=manager", CHECKIN, False),
        ("vo.notebooks.egi.eu", SUBGROUP, False),  # group path must be equal
        ("vo.notebooks.egi.eu:admins", SUBGROUP, True),
        ("vo.notebooks.egi.eu:admins:role=manager", SUBGROUP, True),
        ("vo.other.eu", CHECKIN, False),
        (CHECKIN, CHECKIN, True),
        ("urn:mace:egi.eu:group:vo.notebooks.egi.eu#aai.egi.eu", CHECKIN, True),
        ("urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#other.authority", CHECKIN, False),
        ("urn:geant:eosc-federation.eu:group:vo.notebooks.egi.eu:role=member", CHECKIN, False),
        ("vo.eosc.eu:sub%3Agroup", EOSC, True),
    ],
)
def test_pattern_matching(pattern, entitlement, expected):
    assert parse_pattern(pattern).matches(parse_entitlement(entitlement)) is expected


@pytest.mark.parametrize(
    "bad", ["", "  ", "urn:mace:egi.eu:nogroup", "vo#authority", "a::b", "a:x=y"]
)
def test_malformed_patterns_raise_clear_errors(bad):
    with pytest.raises(ValueError, match="pattern"):
        parse_pattern(bad)


def test_vos_keep_provider_order_and_primary_vo_follows_priority():
    ents = parse_entitlements([SUBGROUP, EOSC, CHECKIN])
    assert vos_of(ents) == ["vo.notebooks.egi.eu", "vo.eosc.eu"]
    assert choose_primary_vo(vos_of(ents), ["vo.eosc.eu"]) == "vo.eosc.eu"
    assert choose_primary_vo(vos_of(ents), ["vo.unrelated"]) == "vo.notebooks.egi.eu"
    assert choose_primary_vo([], ["vo.eosc.eu"]) is None


def test_ten_thousand_entitlements():
    many = [f"urn:mace:egi.eu:group:vo{i}.eu:role=member#aai.egi.eu" for i in range(10_000)]
    ents = parse_entitlements(many)
    assert len(vos_of(ents)) == 10_000
    assert matches_any([parse_pattern("vo9999.eu")], ents)
    assert not matches_any([parse_pattern("vo10000.eu")], ents)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_none(text):
    parsed = parse_entitlement(text)
    if parsed is not None:
        assert parsed.vo and ":group:" in text


CHECKIN_TRUST = EntitlementTrust(frozenset({"urn:mace:egi.eu"}), frozenset({"aai.egi.eu"}))


@pytest.mark.parametrize(
    "pattern, entitlement, expected",
    [
        # the short form: trusted namespace and authority only
        ("vo.notebooks.egi.eu:role=member", CHECKIN, True),
        ("vo.notebooks.egi.eu", "urn:mace:evil.org:group:vo.notebooks.egi.eu#evil.org", False),
        ("vo.notebooks.egi.eu", "urn:mace:egi.eu:group:vo.notebooks.egi.eu#evil.org", False),
        ("vo.notebooks.egi.eu", "urn:mace:egi.eu:group:vo.notebooks.egi.eu", False),
        ("vo.notebooks.egi.eu", "urn:mace:evil.org:group:vo.notebooks.egi.eu#aai.egi.eu", False),
        # a full URN naming its authority is exact, whatever the trust
        ("urn:mace:evil.org:group:vo.x#evil.org", "urn:mace:evil.org:group:vo.x#evil.org", True),
        ("urn:mace:evil.org:group:vo.x#evil.org", "urn:mace:evil.org:group:vo.x#EVIL.org", True),
        # a full URN without authority: its namespace, a trusted authority
        ("urn:mace:egi.eu:group:vo.notebooks.egi.eu", CHECKIN, True),
        ("urn:mace:egi.eu:group:vo.x", "urn:mace:egi.eu:group:vo.x#evil.org", False),
        ("urn:mace:egi.eu:group:vo.x", "urn:mace:egi.eu:group:vo.x", False),
    ],
)
def test_pattern_matching_with_trust(pattern, entitlement, expected):
    parsed = parse_entitlement(entitlement)
    assert parse_pattern(pattern).matches(parsed, CHECKIN_TRUST) is expected
    assert matches_any([parse_pattern(pattern)], [parsed], CHECKIN_TRUST) is expected


def test_entitlements_without_authority_count_only_when_trusted_so():
    bare = parse_entitlement("urn:geant:eosc-federation.eu:group:pp-1:role=owner")
    eosc = EntitlementTrust(frozenset({"urn:geant:eosc-federation.eu"}), frozenset(), True)
    assert eosc.trusts(bare) and eosc.filter([bare, parse_entitlement(CHECKIN)]) == [bare]
    assert not CHECKIN_TRUST.trusts(bare)


def test_issuer_defaults():
    checkin = issuer_defaults("https://aai.egi.eu/auth/realms/egi")
    assert checkin.namespaces == {"urn:mace:egi.eu"} and checkin.authorities == {"aai.egi.eu"}
    assert not checkin.without_authority
    demo = issuer_defaults("https://aai-demo.egi.eu/auth/realms/egi")
    assert demo.authorities == {"aai.egi.eu", "aai-demo.egi.eu"}
    assert issuer_defaults("http://127.0.0.1:4000/auth/realms/egi") == checkin
    node = issuer_defaults("https://proxy.staging.eosc-federation.eu")
    assert node.namespaces == {"urn:geant:eosc-federation.eu"} and node.without_authority
    portal = issuer_defaults("https://AAI.eosc-portal.eu/auth/realms/core")
    assert portal.namespaces == {"urn:geant:eosc-portal.eu"}
    assert portal.authorities == {"aai.eosc-portal.eu"}


def test_counting_values_parses_nothing():
    claims = {"a": ["x"] * 5, "b": "one", "c": {"no": "list"}, "d": None}
    assert count_entitlement_values(claims, ["a", "b", "c", "d", "missing"]) == 6
