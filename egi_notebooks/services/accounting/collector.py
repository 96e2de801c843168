"""Polling the hub for running servers and turning them into session observations."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime

from traitlets import Dict, Float, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..hub import HubClient
from . import VO_PRIORITY_ENV
from .sources import (
    FLAVOR_ANNOTATION,
    IMAGE_ANNOTATION,
    PRIMARY_VO_ANNOTATION,
    PROBE_GROUP,
    annotations_of,
    first_str,
    parse_quantity,
)
from .store import Observation, PollOutcome, Store, make_vmuuid


def _dict_at(mapping: dict, key: str) -> dict:
    """``mapping[key]`` when it is a dict, else an empty one (hub answers may hold null)."""
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def parse_hub_time(value: object) -> int | None:
    """The hub's ISO 8601 timestamps (``2026-11-05T10:00:00.123456Z``) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # the hub writes UTC
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


class Collector(LoggingConfigurable):
    """Reads the hub's users and servers; one complete poll -> one transaction in the store."""

    hub_id = Unicode(
        "",
        config=True,
        help="Identity of this hub in the session VMUUIDs (e.g. its public host name). "
        "Changing it makes every session look new: set it once.",
    )
    excluded_users = List(
        Unicode(), config=True, help="Users never accounted (e.g. service or test accounts)."
    )
    excluded_groups = List(
        Unicode(),
        default_value=[PROBE_GROUP],
        config=True,
        help="Hub groups whose members are never accounted (the status probe's group).",
    )
    flavors = Dict(
        config=True,
        help="Resources per profile slug (user_options.profile): "
        '{"small": {"cpu": 1, "memory": "2Gi", "disk": "10Gi", "image": "..."}}.',
    )
    default_cpu = Float(1.0, config=True, help="CPUs of a server whose profile is not known.")
    default_memory = Unicode(
        "1Gi", config=True, help="Memory of a server whose profile is not known (a quantity)."
    )
    default_flavor = Unicode(
        "default", config=True, help="Flavor name of a server started without a profile."
    )
    default_vo = Unicode(
        "", config=True, help="VO of a session whose primary VO cannot be found ('' = none)."
    )
    clock_skew_tolerance = Integer(
        300,
        config=True,
        help="Seconds a server's start may lie in the future (hub and service clocks differ) "
        "before the server is skipped as bad data.",
    )
    vo_priority = List(
        Unicode(),
        config=True,
        help="VOs in order of preference when a session's primary VO comes from the user's "
        "hub groups. Default: EGICheckinAuthenticator.vo_priority of the hub configuration "
        f"(add_accounting_service passes it in ${VO_PRIORITY_ENV}), so it is set once; set "
        "this only to make accounting differ.",
    )

    @default("vo_priority")
    def _default_vo_priority(self) -> list[str]:
        raw = os.environ.get(VO_PRIORITY_ENV)
        if not raw:
            return []
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.log.warning("Ignoring $%s: not a JSON list of VO names", VO_PRIORITY_ENV)
            return []
        return value

    def is_excluded(self, user: dict) -> bool:
        if user.get("name") in self.excluded_users:
            return True
        return bool(set(user.get("groups") or []) & set(self.excluded_groups))

    def primary_vo_of(self, user: dict, server: dict) -> str | None:
        """The spawner's pod annotation (in the server state), then the user's hub groups
        (EGICheckinAuthenticator mirrors the VOs of trusted entitlements as groups) by
        ``vo_priority``.

        Never the spawn request's ``user_options``: the user writes them. Never auth_state:
        reading it would need admin:auth_state, which hands the users' refresh tokens to
        this service.
        """
        state = _dict_at(server, "state")
        groups = [g for g in user.get("groups") or [] if isinstance(g, str)]
        groups = [g for g in groups if g not in self.excluded_groups]
        by_priority = next((vo for vo in self.vo_priority if vo in groups), None)
        return first_str(
            annotations_of(server).get(PRIMARY_VO_ANNOTATION),
            state.get("primary_vo"),
            by_priority,
            groups[0] if len(groups) == 1 else None,
            self.default_vo,
        )

    def flavor_of(self, server: dict) -> str:
        options = _dict_at(server, "user_options")
        return (
            first_str(annotations_of(server).get(FLAVOR_ANNOTATION), options.get("profile"))
            or self.default_flavor
        )

    def image_of(self, server: dict, flavor_spec: dict) -> str | None:
        """The pod's image as the spawner recorded it, else the flavour's configured image;
        never an image the user named in the spawn request."""
        state = _dict_at(server, "state")
        return first_str(
            annotations_of(server).get(IMAGE_ANNOTATION),
            state.get("image"),
            flavor_spec.get("image"),
        )

    def observation(self, user: dict, server: dict, now: int) -> Observation | None:
        """One server model -> one observation; None (logged) for unusable data."""
        name = user.get("name")
        server_name = server.get("name") or ""
        start = parse_hub_time(server.get("started"))
        if not isinstance(name, str) or start is None:
            self.log.warning(
                "skipping server %s/%s without a valid start time (%r)",
                name,
                server_name,
                server.get("started"),
            )
            return None
        if start > now + self.clock_skew_tolerance:
            self.log.warning(
                "skipping server %s/%s starting %ss in the future (clock skew?)",
                name,
                server_name,
                start - now,
            )
            return None
        start = min(start, now)
        flavor = self.flavor_of(server)
        spec = _dict_at(self.flavors, flavor)
        state = _dict_at(server, "state")
        memory = parse_quantity(spec.get("memory", self.default_memory))
        disk = parse_quantity(spec.get("disk"))
        return Observation(
            vmuuid=make_vmuuid(self.hub_id, name, server_name, start),
            user=name,
            server_name=server_name,
            start_time=start,
            primary_vo=self.primary_vo_of(user, server),
            flavor=flavor,
            image=self.image_of(server, spec),
            cpu_request=parse_quantity(spec.get("cpu", self.default_cpu)),
            memory_request=int(memory) if memory is not None else None,
            disk_request=int(disk) if disk is not None else None,
            namespace=first_str(state.get("namespace")),
            pod_name=first_str(state.get("pod_name")),
        )

    async def gather(
        self, hub: HubClient, known_vos: dict[str, str], now: int
    ) -> list[Observation]:
        """Every running, accounted server. Raises if the hub's answer is incomplete."""
        pending: list[tuple[dict, dict]] = []
        async for user in hub.users(state="active"):
            if not isinstance(user, dict) or self.is_excluded(user):
                continue
            servers = user.get("servers")
            if not isinstance(servers, dict):
                continue
            for server in servers.values():
                if isinstance(server, dict) and not server.get("stopped"):
                    pending.append((user, server))
        observations = []
        for user, server in pending:
            obs = self.observation(user, server, now)
            if obs is None:
                continue
            if obs.primary_vo is None and obs.vmuuid in known_vos:
                obs.primary_vo = known_vos[obs.vmuuid]
            observations.append(obs)
        return observations

    async def poll(self, hub: HubClient, store: Store, now: int | None = None) -> PollOutcome:
        now = int(time.time()) if now is None else now
        known_vos = await asyncio.to_thread(store.known_vos)
        observations = await self.gather(hub, known_vos, now)
        outcome = await asyncio.to_thread(store.apply_poll, observations, now)
        self.log.info(
            "poll: %d running, %d started, %d ended, %d updated",
            outcome.seen,
            outcome.started,
            outcome.ended,
            outcome.updated,
        )
        return outcome
