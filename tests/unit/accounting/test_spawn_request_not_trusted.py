"""The collector never takes a session's VO or image from the spawn request (user_options).

Any user can put anything in the options of their own spawn request; the hub keeps them in
the server model the collector reads. With a spawner that records nothing for accounting (the
demo's local spawner, an operator's own), the VO comes from the user's hub groups (the VOs the
authenticator computed from trusted entitlements) and the image from the operator's flavour
configuration: a forged ``vo``, ``primary_vo`` or ``image`` option is ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime

from egi_notebooks.services.accounting.collector import Collector

NOW = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
FORGED = {
    "image": "attacker.example/free-gpu:latest",
    "vo": "vo.someone-else.eu",
    "primary_vo": "vo.someone-else.eu",
}


def server(**user_options) -> dict:
    """A local spawner's server model: its state has no accounting annotations."""
    return {
        "name": "",
        "started": "2026-03-01T10:00:00Z",
        "state": {},
        "user_options": user_options,
    }


def test_a_forged_vo_and_image_are_ignored_with_a_local_spawner():
    collector = Collector(
        hub_id="t",
        vo_priority=["vo.alpha.eu"],
        flavors={"small": {"cpu": 1, "image": "registry.example.org/small:1"}},
    )
    alice = {"name": "alice", "groups": ["vo.beta.eu", "vo.alpha.eu"]}
    obs = collector.observation(alice, server(profile="small", **FORGED), NOW)
    assert (obs.primary_vo, obs.image, obs.flavor) == (
        "vo.alpha.eu", "registry.example.org/small:1", "small",
    )  # fmt: skip


def test_a_user_in_no_vo_is_not_accounted_to_the_vo_they_name():
    collector = Collector(hub_id="t", default_vo="vo.notebooks.egi.eu")
    obs = collector.observation({"name": "carol", "groups": []}, server(**FORGED), NOW)
    assert obs.primary_vo == "vo.notebooks.egi.eu"  # the operator's default, not the request's
    assert obs.image is None
