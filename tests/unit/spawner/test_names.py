"""Property test: object names are valid for Kubernetes and never collide."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from egi_notebooks.spawner.names import is_dns_label, user_server_slug, user_slug

# Usernames as hubs see them: unicode, up to 255 characters, '@', dots, capitals, and
# families of names differing only in case or punctuation.
usernames = st.one_of(
    st.text(min_size=1, max_size=255),
    st.text(alphabet=string.ascii_letters + string.digits + "@.-_+", min_size=1, max_size=80),
    st.emails(),
)


def variants(name: str) -> list[str]:
    return [
        name,
        name.upper(),
        name.lower(),
        name.replace(".", "-"),
        name.replace("@", "."),
        name + ".",
        "-" + name,
        name.replace("-", "--"),
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(usernames, min_size=50, max_size=120, unique=True))
def test_user_objects_valid_and_distinct(names):
    names = list(dict.fromkeys(v for n in names for v in variants(n)))  # thousands per run
    slugs = {}
    for name in names:
        slug = user_slug(name)
        for obj in (f"claim-{slug}", f"egi-token-{slug}", slug):
            assert is_dns_label(obj), (name, obj)
        assert slugs.setdefault(slug, name) == name, f"{name!r} collides with {slugs[slug]!r}"
    assert len(slugs) == len(names)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(usernames, st.text(max_size=255)), min_size=20, max_size=80, unique=True))
def test_user_server_objects_distinct_from_each_other_and_from_users(pairs):
    seen = {}
    for user, server in pairs:
        slug = user_server_slug(user, server)
        assert is_dns_label(f"claim-{slug}")
        assert seen.setdefault(slug, (user, server or "")) == (user, server or "")
    user_slugs = {user_slug(u) for u, s in pairs if s}
    assert not user_slugs & {user_server_slug(u, s) for u, s in pairs if s}


def test_simple_names_stay_readable():
    assert user_slug("alice") == "alice"
    assert user_slug("Alice") != "alice"
    assert user_slug("alice@egi.eu").startswith("alice-egi-eu---")
