"""The tokens service's cache of callers' identities."""

from __future__ import annotations

from egi_notebooks.services.tokens.app import IdentityCache, TokensApp


def test_identities_are_cached_a_few_seconds_by_default():
    assert TokensApp.identity_cache_seconds.default_value <= 5


def test_a_dropped_identity_is_looked_up_again():
    cache = IdentityCache(seconds=60, size=10)
    cache.put("token", {"name": "alice"})
    assert cache.get("token") == (True, {"name": "alice"})
    cache.drop("token")
    assert cache.get("token") == (False, None)
    cache.drop("never-seen")  # no error


def test_the_cache_holds_no_token_values():
    cache = IdentityCache(seconds=60, size=10)
    cache.put("secret-token", None)
    assert "secret-token" not in repr(cache._items)
