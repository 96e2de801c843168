"""Hub configuration from a zero-to-jupyterhub ``values.yaml``, built the way the chart builds it.

The chart mounts the merged values into the hub pod and its ``jupyterhub_config.py`` turns them
into traitlets configuration (z2jh 4.x, ``jupyterhub/files/hub/jupyterhub_config.py``):

- fixed settings (``cleanup_servers = False``, ``last_activity_interval = 60``, the curl HTTP
  client, ``slow_spawn_timeout = 0``), ``hub.*`` keys -> ``c.JupyterHub``;
- ``singleuser.*`` -> ``c.KubeSpawner`` (EGISpawner inherits them: a ``c.KubeSpawner`` value
  beats a class default of the subclass, e.g. the chart's ``singleuser.memory.guarantee: 1G``
  beats EGISpawner's 512M), ``singleuser.cmd`` / ``defaultUrl`` -> ``c.Spawner``;
- ``cull`` -> the idle-culler service and its role, ``hub.services`` / ``hub.loadRoles``;
- ``hub.config`` set as-is per class (after the chart's own settings), then every
  ``hub.extraConfig`` snippet in sorted key order;
- ``hub.extraEnv`` and the chart's own variables -> the hub container's environment;
- ``hub.extraVolumes`` / ``hub.extraVolumeMounts`` -> the hub container's file system
  (:meth:`Chart.hub_mounts`: claims only; the rehearsal bind-mounts a directory per claim).

Only the keys :data:`TRANSLATED` lists are implemented, plus :data:`CHART_ONLY` keys that render
Kubernetes objects and no hub configuration; :func:`unsupported` names every other key of a
values file, so a change to ``values.yaml`` cannot be silently ignored by a test.

Not applied here because only a cluster has them: the proxy pod (``ConfigurableHTTPProxy.api_url``,
``should_start = False``), the hub Service (``hub_bind_url``, ``hub_connect_url``); the harness
runs the proxy itself on free loopback ports.
"""

from __future__ import annotations

import copy
import glob
import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

#: The chart version whose defaults :data:`CHART_DEFAULTS` copies (labels, network-tools tag).
CHART_VERSION = "4.4.0"
CHART_NAME = "jupyterhub"

#: The chart's defaults for the keys that reach hub configuration (z2jh 4.x values.yaml).
CHART_DEFAULTS: dict[str, Any] = {
    "fullnameOverride": "",
    "nameOverride": None,
    "imagePullSecret": {"create": False, "automaticReferenceInjection": True},
    "imagePullSecrets": [],
    "hub": {
        "config": {"JupyterHub": {"admin_access": True, "authenticator_class": "dummy"}},
        "baseUrl": "/",
        "concurrentSpawnLimit": 64,
        "consecutiveFailureLimit": 5,
        "activeServerLimit": None,
        "db": {"type": "sqlite-pvc", "url": None, "password": None},
        "extraConfig": {},
        "extraEnv": {},
        "extraVolumes": [],
        "extraVolumeMounts": [],
        "loadRoles": {},
        "services": {},
        "allowNamedServers": False,
        "namedServerLimitPerUser": None,
        "authenticatePrometheus": None,
        "redirectToServer": None,
        "shutdownOnLogout": None,
        "templatePaths": [],
        "templateVars": {},
    },
    "proxy": {"secretToken": None},
    "singleuser": {
        "podNameTemplate": None,
        "extraTolerations": [],
        "nodeSelector": {},
        "extraNodeAffinity": {"required": [], "preferred": []},
        "extraPodAffinity": {"required": [], "preferred": []},
        "extraPodAntiAffinity": {"required": [], "preferred": []},
        "networkTools": {
            "image": {"name": "quay.io/jupyterhub/k8s-network-tools", "tag": CHART_VERSION},
            "resources": {},
        },
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "events": True,
        "extraAnnotations": {},
        "extraLabels": {"hub.jupyter.org/network-access-hub": "true"},
        "extraFiles": {},
        "extraEnv": {},
        "lifecycleHooks": {},
        "initContainers": [],
        "extraContainers": [],
        "allowPrivilegeEscalation": False,
        "uid": 1000,
        "fsGid": 100,
        "serviceAccountName": None,
        "storage": {
            "type": "dynamic",
            "extraLabels": {},
            "extraVolumes": None,
            "extraVolumeMounts": None,
            "capacity": "10Gi",
            "homeMountPath": "/home/jovyan",
        },
        "image": {
            "name": "quay.io/jupyterhub/k8s-singleuser-sample",
            "tag": CHART_VERSION,
            "pullPolicy": None,
            "pullSecrets": [],
        },
        "startTimeout": 300,
        "cpu": {"limit": None, "guarantee": None},
        "memory": {"limit": None, "guarantee": "1G"},
        "extraResource": {"limits": {}, "guarantees": {}},
        "cmd": "jupyterhub-singleuser",
        "defaultUrl": None,
        "extraPodConfig": {},
        "profileList": [],
    },
    "scheduling": {
        "userScheduler": {"enabled": True},
        "podPriority": {"enabled": False},
        "userPods": {
            "tolerations": [
                {
                    "key": "hub.jupyter.org/dedicated",
                    "operator": "Equal",
                    "value": "user",
                    "effect": "NoSchedule",
                },
                {
                    "key": "hub.jupyter.org_dedicated",
                    "operator": "Equal",
                    "value": "user",
                    "effect": "NoSchedule",
                },
            ],
            "nodeAffinity": {"matchNodePurpose": "prefer"},
        },
    },  # fmt: skip
    "cull": {
        "enabled": True,
        "users": False,
        "adminUsers": True,
        "removeNamedServers": False,
        "timeout": 3600,
        "every": 600,
        "concurrency": 10,
        "maxAge": 0,
    },
    "debug": {"enabled": False},
}

#: Keys of a values file this module turns into hub configuration (a key or a parent of it).
TRANSLATED = (
    "hub.config",
    "hub.extraConfig",
    "hub.extraEnv",
    "hub.services",
    "hub.loadRoles",
    "hub.baseUrl",
    "hub.concurrentSpawnLimit",
    "hub.consecutiveFailureLimit",
    "hub.activeServerLimit",
    "hub.allowNamedServers",
    "hub.namedServerLimitPerUser",
    "hub.authenticatePrometheus",
    "hub.redirectToServer",
    "hub.shutdownOnLogout",
    "hub.templatePaths",
    "hub.templateVars",
    "hub.db.type",
    "proxy.secretToken",
    "singleuser.image.name",
    "singleuser.image.tag",
    "singleuser.image.pullPolicy",
    "singleuser.defaultUrl",
    "singleuser.cmd",
    "singleuser.memory",
    "singleuser.cpu",
    "singleuser.extraResource",
    "singleuser.extraEnv",
    "singleuser.extraLabels",
    "singleuser.extraAnnotations",
    "singleuser.uid",
    "singleuser.fsGid",
    "singleuser.startTimeout",
    "singleuser.events",
    "singleuser.nodeSelector",
    "singleuser.extraTolerations",
    "singleuser.extraPodConfig",
    "singleuser.allowPrivilegeEscalation",
    "singleuser.storage.type",  # "none" only: see _storage
    "singleuser.cloudMetadata",
    "cull",
    "debug.enabled",
)

#: Keys that only render Kubernetes objects (Ingress, images, Services, NetworkPolicies, RBAC):
#: nothing of them reaches hub configuration. :func:`cluster_problems` checks what can be.
CHART_ONLY = (
    "ingress",
    "hub.image",
    "hub.service",
    "hub.networkPolicy",
    "singleuser.networkPolicy",
    "rbac.create",
)

#: Keys of the hub pod's spec that reach the hub's file system, not its configuration
#: (:meth:`Chart.hub_mounts`).
HUB_POD = ("hub.extraVolumes", "hub.extraVolumeMounts")

SERVICE_KEYS = {"apiToken", "name", "url", "admin", "oauth_no_confirm", "display", "info",
                "oauth_client_allowed_scopes", "oauth_roles", "command", "environment",
                "oauth_redirect_uri", "oauth_client_id", "cwd", "user"}  # fmt: skip
PLACEHOLDER = re.compile(r"<[^<>\n]*>")


class UnsupportedValues(ValueError):
    """A values file uses keys this translation does not implement."""


@dataclass(frozen=True)
class HubMount:
    """One of the hub container's ``hub.extraVolumeMounts``, on a PersistentVolumeClaim."""

    mount_path: str
    claim: str
    sub_path: str = ""
    read_only: bool = False


# ----- values ------------------------------------------------------------------------------


def merge(defaults: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over chart defaults: maps merge, anything else replaces,
    ``null`` removes the default."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _paths(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            found += _paths(value, path + ".")
        else:
            found.append(path)
    return found


def _covered(path: str, keys: tuple[str, ...]) -> bool:
    return any(path == k or path.startswith(k + ".") for k in keys)


def unsupported(user_values: Mapping[str, Any]) -> list[str]:
    """Every key path of ``user_values`` neither translated nor chart-only (empty: all known)."""
    problems = [
        p for p in _paths(user_values) if not _covered(p, TRANSLATED + CHART_ONLY + HUB_POD)
    ]
    storage_type = _get(user_values, "singleuser.storage.type", "dynamic")
    if storage_type != "none":
        problems.append(f"singleuser.storage.type={storage_type} (only 'none' is implemented)")
    for key, service in (_get(user_values, "hub.services", {}) or {}).items():
        problems += [f"hub.services.{key}.{k}" for k in service if k not in SERVICE_KEYS]
    if _get(user_values, "hub.db.type", "sqlite-pvc") not in ("sqlite-pvc", "sqlite-memory"):
        problems.append("hub.db.type (only sqlite-pvc and sqlite-memory are implemented)")
    return problems


def fill_placeholders(text: str, fill: Callable[[str], str]) -> str:
    """``text`` with every ``<...>`` replaced by ``fill(placeholder)`` (called once per
    occurrence, so each generated secret differs)."""
    return PLACEHOLDER.sub(lambda m: fill(m.group(0)), text)


def load_values(text: str) -> dict[str, Any]:
    """The user's values (not merged); fails loudly on unsupported keys."""
    values = yaml.safe_load(text) or {}
    problems = unsupported(values)
    if problems:
        raise UnsupportedValues(
            "values keys the test translation does not implement (implement them in "
            f"tests/harness/z2jh.py): {problems}"
        )
    return values


def _get(values: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value: Any = values
    for level in key.split("."):
        if not isinstance(value, Mapping) or level not in value:
            return default
        value = value[level]
    return value


# ----- the hub's configuration ------------------------------------------------------------------


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


class Chart:
    """The chart rendered for one release: ``apply`` configures ``c`` in the hub process,
    ``hub_env`` is the hub container's environment. ``generated`` holds what the chart
    generates and keeps in its own Secret (cookie secret, proxy token, service tokens)."""

    def __init__(
        self,
        user_values: Mapping[str, Any],
        release: str = "notebooks",
        namespace: str = "default",
        generated: Mapping[str, str] | None = None,
    ) -> None:
        base = merge(CHART_DEFAULTS, {"Chart": {"Name": CHART_NAME, "Version": CHART_VERSION}})
        self.values = merge(base, {**user_values, "Release": {"Name": release}})
        self.user_values = dict(user_values)
        self.namespace = namespace
        self.generated = dict(generated or {})
        for key in ("hub.config.JupyterHub.cookie_secret",
                    "hub.config.ConfigurableHTTPProxy.auth_token"):  # fmt: skip
            self.generated.setdefault(key, secrets.token_hex(32))
        for key in self.get("hub.services", {}) or {}:
            self.generated.setdefault(f"hub.services.{key}.apiToken", secrets.token_hex(32))

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(_get(self.values, key, default))

    def name(self, short: str) -> str:
        """A resource's full name: with the default ``fullnameOverride: ""``, the short name."""
        prefix = self.values.get("fullnameOverride")
        if prefix is None:
            raise UnsupportedValues("fullnameOverride: null (release-prefixed names)")
        return f"{prefix}-{short}" if prefix else short

    # ----- secrets the chart keeps in its hub Secret -------------------------------------------

    def secret_value(self, key: str) -> str:
        """``z2jh.get_secret_value``: the user's value if set, else the generated one."""
        if key == "hub.config.CryptKeeper.keys":
            keys = self.get("hub.config.CryptKeeper.keys")
            if not keys:
                raise UnsupportedValues("hub.config.CryptKeeper.keys must be set")
            return ";".join(keys)
        if key == "hub.config.ConfigurableHTTPProxy.auth_token":
            return (
                self.get("hub.config.ConfigurableHTTPProxy.auth_token")
                or self.get("proxy.secretToken")
                or self.generated[key]
            )
        if key == "hub.config.JupyterHub.cookie_secret":
            return self.get("hub.config.JupyterHub.cookie_secret") or self.generated[key]
        match = re.fullmatch(r"hub\.services\.([^.]+)\.apiToken", key)
        if match:
            return self.get(f"hub.services.{match.group(1)}.apiToken") or self.generated[key]
        raise KeyError(key)

    def hub_env(self, secret_key_ref: Callable[[str, str], str]) -> dict[str, str]:
        """The hub container's environment: the chart's variables, then ``hub.extraEnv``
        (``valueFrom.secretKeyRef`` resolved by ``secret_key_ref(name, key)``)."""
        env = {
            "PYTHONUNBUFFERED": "1",
            "HELM_RELEASE_NAME": self.values["Release"]["Name"],
            "POD_NAMESPACE": self.namespace,
            "CONFIGPROXY_AUTH_TOKEN": self.secret_value(
                "hub.config.ConfigurableHTTPProxy.auth_token"
            ),
        }
        extra = self.get("hub.extraEnv", {}) or {}
        items = extra if isinstance(extra, list) else [
            {"name": k, "value": v} if isinstance(v, str) else {"name": k, **v}
            for k, v in extra.items()
        ]  # fmt: skip
        for item in items:
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if not ref or set(item["valueFrom"]) != {"secretKeyRef"}:
                raise UnsupportedValues(f"hub.extraEnv.{item['name']}: only value/secretKeyRef")
            env[item["name"]] = secret_key_ref(ref["name"], ref["key"])
        return env

    # ----- jupyterhub_config.py ------------------------------------------------------------

    def apply(self, c: Any) -> list[str]:
        """Configure ``c`` as the chart's ``jupyterhub_config.py`` would, in its order; returns
        notes on what could not be done here (e.g. no pycurl)."""
        notes: list[str] = []
        try:
            import pycurl  # noqa: F401
        except ImportError:
            notes.append("pycurl is not installed: the hub uses tornado's simple HTTP client "
                         "(the chart's hub image configures the curl client)")  # fmt: skip
        else:
            from tornado.httpclient import AsyncHTTPClient

            AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient")
        get = self.get

        c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
        c.JupyterHub.cleanup_servers = False
        c.JupyterHub.last_activity_interval = 60
        c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

        db_type = get("hub.db.type")
        if db_type == "sqlite-pvc":
            c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"  # in the hub's PVC, its cwd
        elif db_type == "sqlite-memory":
            c.JupyterHub.db_url = "sqlite://"

        for trait in ("concurrent_spawn_limit", "active_server_limit", "base_url",
                      "allow_named_servers", "named_server_limit_per_user",
                      "authenticate_prometheus", "redirect_to_server", "shutdown_on_logout",
                      "template_paths", "template_vars"):  # fmt: skip
            self._set(c.JupyterHub, trait, "hub." + _camel(trait))

        labels = {}
        labels["app.kubernetes.io/name"] = labels["app"] = get("nameOverride") or CHART_NAME
        labels["app.kubernetes.io/instance"] = labels["release"] = get("Release.Name")
        labels["helm.sh/chart"] = labels["chart"] = f"{CHART_NAME}-{CHART_VERSION}"
        labels["app.kubernetes.io/managed-by"] = "kubespawner"
        c.KubeSpawner.common_labels = labels
        c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", "default")
        self._set(c.Spawner, "consecutive_failure_limit", "hub.consecutiveFailureLimit")

        for trait, key in (
            ("pod_name_template", None), ("start_timeout", None),
            ("image_pull_policy", "image.pullPolicy"), ("events_enabled", "events"),
            ("extra_labels", None), ("extra_annotations", None), ("uid", None),
            ("fs_gid", None), ("service_account", "serviceAccountName"),
            ("storage_extra_labels", "storage.extraLabels"), ("node_selector", None),
            ("node_affinity_required", "extraNodeAffinity.required"),
            ("node_affinity_preferred", "extraNodeAffinity.preferred"),
            ("pod_affinity_required", "extraPodAffinity.required"),
            ("pod_affinity_preferred", "extraPodAffinity.preferred"),
            ("pod_anti_affinity_required", "extraPodAntiAffinity.required"),
            ("pod_anti_affinity_preferred", "extraPodAntiAffinity.preferred"),
            ("lifecycle_hooks", None), ("init_containers", None), ("extra_containers", None),
            ("mem_limit", "memory.limit"), ("mem_guarantee", "memory.guarantee"),
            ("cpu_limit", "cpu.limit"), ("cpu_guarantee", "cpu.guarantee"),
            ("extra_resource_limits", "extraResource.limits"),
            ("extra_resource_guarantees", "extraResource.guarantees"),
            ("environment", "extraEnv"), ("profile_list", None), ("extra_pod_config", None),
        ):  # fmt: skip
            self._set(c.KubeSpawner, trait, "singleuser." + (key or _camel(trait)))

        image = get("singleuser.image.name")
        if image:
            tag = get("singleuser.image.tag")
            c.KubeSpawner.image = f"{image}:{tag}" if tag else image
        c.KubeSpawner.allow_privilege_escalation = get("singleuser.allowPrivilegeEscalation")
        pull_secrets = []
        if get("imagePullSecret.automaticReferenceInjection") and get("imagePullSecret.create"):
            pull_secrets.append(self.name("image-pull-secret"))
        pull_secrets += get("imagePullSecrets") or []
        pull_secrets += get("singleuser.image.pullSecrets") or []
        if pull_secrets:
            c.KubeSpawner.image_pull_secrets = pull_secrets

        if get("scheduling.userScheduler.enabled"):
            c.KubeSpawner.scheduler_name = self.name("user-scheduler")
        if get("scheduling.podPriority.enabled"):
            c.KubeSpawner.priority_class_name = self.name("priority")
        purpose = get("scheduling.userPods.nodeAffinity.matchNodePurpose")
        selector = {"matchExpressions": [
            {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}
        ]}  # fmt: skip
        if purpose == "prefer":
            c.KubeSpawner.node_affinity_preferred = [
                *(get("singleuser.extraNodeAffinity.preferred") or []),
                {"weight": 100, "preference": selector},
            ]
        elif purpose == "require":
            c.KubeSpawner.node_affinity_required = [
                *(get("singleuser.extraNodeAffinity.required") or []),
                selector,
            ]
        elif purpose != "ignore":
            raise ValueError(f"Unrecognized value for matchNodePurpose: {purpose}")
        tolerations = (get("scheduling.userPods.tolerations") or []) + (
            get("singleuser.extraTolerations") or []
        )
        if tolerations:
            c.KubeSpawner.tolerations = tolerations

        volumes, volume_mounts = self._storage()
        c.KubeSpawner.volumes = volumes
        c.KubeSpawner.volume_mounts = volume_mounts

        services: list[dict[str, Any]] = []
        roles: list[dict[str, Any]] = []
        if get("cull.enabled"):
            service, role = self._culler(c)
            services.append(service)
            roles.append(role)
        for key, service in (get("hub.services", {}) or {}).items():
            service.setdefault("name", key)
            service.pop("apiToken", None)
            service["api_token"] = self.secret_value(f"hub.services.{key}.apiToken")
            services.append(service)
        for key, role in (get("hub.loadRoles", {}) or {}).items():
            role.setdefault("name", key)
            roles.append(role)
        c.JupyterHub.services = services
        c.JupyterHub.load_roles = roles

        if "cmd" in get("singleuser", {}):
            c.Spawner.cmd = get("singleuser.cmd")
        self._set(c.Spawner, "default_url", "singleuser.defaultUrl")

        metadata = get("singleuser.cloudMetadata", {})
        if metadata.get("blockWithIptables") is True:
            c.KubeSpawner.init_containers = [
                *(get("singleuser.initContainers") or []),
                self._block_metadata_container(metadata["ip"]),
            ]

        if get("debug.enabled", False):
            c.JupyterHub.log_level = "DEBUG"
            c.Spawner.debug = True

        c.JupyterHub.cookie_secret = self.secret_value("hub.config.JupyterHub.cookie_secret")
        c.CryptKeeper.keys = self.secret_value("hub.config.CryptKeeper.keys").split(";")

        for section, cfg in (get("hub.config", {}) or {}).items():
            if section == "JupyterHub":
                for seeded in ("proxy_auth_token", "cookie_secret", "services"):
                    cfg.pop(seeded, None)
            elif section == "ConfigurableHTTPProxy":
                cfg.pop("auth_token", None)
            elif section == "CryptKeeper":
                cfg.pop("keys", None)
            if not section[:1].isupper():
                raise UnsupportedValues(f"hub.config.{section}: not a Configurable class name")
            c[section].update(cfg)

        namespace = {
            "c": c,
            "get_config": self.get,
            "get_secret_value": self.secret_value,
            "get_name": self.name,
            "os": os,
            "sys": sys,
            "re": re,
            "glob": glob,
            "__name__": "jupyterhub_config",
        }
        for key, snippet in sorted((get("hub.extraConfig", {}) or {}).items()):
            exec(compile(snippet, f"hub.extraConfig.{key}", "exec"), namespace)
        return notes

    def _set(self, section: Any, trait: str, key: str) -> None:
        value = self.get(key)
        if value is not None:
            setattr(section, trait, value)

    def _storage(self) -> tuple[dict, dict]:
        if self.get("singleuser.storage.type") != "none":
            raise UnsupportedValues("singleuser.storage.type: only 'none' is implemented")
        if self.get("singleuser.extraFiles"):
            raise UnsupportedValues("singleuser.extraFiles is not implemented")
        volumes: dict[str, Any] = {}
        mounts: dict[str, Any] = {}
        extra_volumes = self.get("singleuser.storage.extraVolumes") or {}
        extra_mounts = self.get("singleuser.storage.extraVolumeMounts") or {}
        if extra_volumes or extra_mounts:
            raise UnsupportedValues("singleuser.storage.extraVolumes/Mounts are not implemented")
        return volumes, mounts

    def hub_mounts(self) -> list[HubMount]:
        """The hub container's extra mounts (``hub.extraVolumeMounts`` with the
        ``hub.extraVolumes`` they name), parents before children. Only claim volumes are
        implemented: anything else is UnsupportedValues; a mount of an undeclared volume, a
        relative path or a map instead of a list (z2jh 4.x: lists) is a ValueError, as the
        chart or the API server would refuse it."""
        volumes: dict[str, Mapping[str, Any]] = {}
        for key in HUB_POD:
            if not isinstance(self.get(key) or [], list):
                raise ValueError(f"{key} must be a list (zero-to-jupyterhub 4.x)")
        for volume in self.get("hub.extraVolumes") or []:
            kinds = set(volume) - {"name"}
            if kinds != {"persistentVolumeClaim"}:
                raise UnsupportedValues(
                    f"hub.extraVolumes {volume.get('name')}: only persistentVolumeClaim "
                    f"volumes are implemented, not {sorted(kinds)}"
                )
            volumes[volume["name"]] = volume
        mounts = []
        for mount in self.get("hub.extraVolumeMounts") or []:
            unknown = set(mount) - {"name", "mountPath", "subPath", "readOnly"}
            if unknown:
                raise UnsupportedValues(f"hub.extraVolumeMounts: {sorted(unknown)}")
            if mount.get("name") not in volumes:
                raise ValueError(f"hub.extraVolumeMounts: no hub.extraVolumes {mount.get('name')}")
            path = mount.get("mountPath", "")
            if not path.startswith("/"):
                raise ValueError(f"hub.extraVolumeMounts {mount['name']}: mountPath {path!r}")
            claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
            mounts.append(HubMount(path.rstrip("/") or "/", claim, mount.get("subPath", ""),
                                   bool(mount.get("readOnly", False))))  # fmt: skip
        return sorted(mounts, key=lambda m: m.mount_path.count("/"))

    def _culler(self, c: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        get = self.get
        role = {
            "name": "jupyterhub-idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["jupyterhub-idle-culler"],
        }
        base_url = (get("hub.baseUrl") or "/").rstrip("/")
        command = ["python3", "-m", "jupyterhub_idle_culler",
                   f"--url=http://localhost:8081{base_url}/hub/api"]  # fmt: skip
        for option, key in (("timeout", "timeout"), ("cull-every", "every"),
                            ("concurrency", "concurrency"), ("max-age", "maxAge")):  # fmt: skip
            if get(f"cull.{key}"):
                command.append(f"--{option}={get(f'cull.{key}')}")
        if get("cull.users"):
            command.append("--cull-users")
            role["scopes"].append("admin:users")
        if not get("cull.adminUsers"):
            command.append("--cull-admin-users=false")
        if get("cull.removeNamedServers"):
            command.append("--remove-named-servers")
        # the chart inserts --max-age after the other options; order does not matter to argparse
        return {"name": "jupyterhub-idle-culler", "command": command}, role

    def _block_metadata_container(self, ip: str) -> dict[str, Any]:
        image = self.get("singleuser.networkTools.image")
        return {
            "name": "block-cloud-metadata",
            "image": f"{image['name']}:{image['tag']}",
            "command": ["iptables", "--append", "OUTPUT", "--protocol", "tcp",
                        "--destination", ip, "--destination-port", "80", "--jump", "DROP"],
            "securityContext": {"privileged": True, "runAsUser": 0,
                                "capabilities": {"add": ["NET_ADMIN"]}},
            "resources": self.get("singleuser.networkTools.resources") or {},
        }  # fmt: skip

    # ----- what the chart's Kubernetes objects must agree on -------------------------------

    def cluster_problems(self, services: list[Mapping[str, Any]]) -> list[str]:
        """Problems a cluster would show with the configured ``services`` (from
        ``c.JupyterHub.services`` after :meth:`apply`): a service on the hub Service whose port
        the Service does not expose or the hub's NetworkPolicy does not let the proxy reach;
        a public URL whose host is not one of the Ingress hosts."""
        problems = []
        hub_host = self.name("hub")
        exposed = {p.get("port"): p.get("targetPort", p.get("port"))
                   for p in self.get("hub.service.extraPorts") or []}  # fmt: skip
        allowed = set()
        for rule in self.get("hub.networkPolicy.ingress") or []:
            sources = rule.get("from") or []
            from_proxy = any(
                (s.get("podSelector") or {}).get("matchLabels", {}).get("component") == "proxy"
                for s in sources
            )
            if from_proxy:
                allowed.update(p.get("port") for p in rule.get("ports") or [])
        for service in services:
            url = service.get("url")
            if not url:
                continue
            parts = urlsplit(url)
            if parts.hostname != hub_host:
                problems.append(f"service {service['name']}: {url} is not on the hub Service")
                continue
            port = parts.port or 80
            if exposed.get(port) != port:
                problems.append(f"service {service['name']}: hub.service.extraPorts lacks {port}")
            if port not in allowed:
                problems.append(
                    f"service {service['name']}: hub.networkPolicy.ingress does not let the "
                    f"proxy reach port {port}"
                )
        hosts = set(self.get("ingress.hosts") or [])
        if self.get("ingress.enabled"):
            for path, value in _strings(self.get("hub.config") or {}, "hub.config"):
                if re.match(r"https?://", value) and urlsplit(value).hostname not in hosts:
                    problems.append(
                        f"{path}: {urlsplit(value).hostname} is not an ingress host {sorted(hosts)}"
                    )
        return problems


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [item for k, v in value.items() for item in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}[{i}]")]
    return []


def config_file_text(values_path: Path, namespace: str, generated_path: Path) -> str:
    """The body of a ``jupyterhub_config.py`` that applies the chart to ``c`` in the hub
    process, reading the values the way the chart's pod does (a mounted file)."""
    root = Path(__file__).resolve().parents[2]
    return f"""
import json, sys
sys.path.insert(0, {str(root)!r})
from tests.harness.z2jh import Chart, load_values
with open({str(values_path)!r}) as f:
    _values = load_values(f.read())
with open({str(generated_path)!r}) as f:
    _generated = json.load(f)
for _note in Chart(_values, namespace={namespace!r}, generated=_generated).apply(c):
    print("z2jh rehearsal:", _note, flush=True)
"""
