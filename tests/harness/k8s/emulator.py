"""An in-process Kubernetes API server for tests: kmock 0.8 plus the state it lacks.

kmock's ``KubernetesEmulator`` serves HTTP, parses Kubernetes URLs, renders Kubernetes
``Status`` errors and lets tests add reactions with its DSL. Out of the box it does not
recognise ``watch=True`` (what kubernetes_asyncio sends), sets no server fields, ignores
selectors and has no replace (PUT). This subclass keeps kmock's server, parsing, DSL and
error rendering, and replaces the object store with a small one that does what the
kubespawner reflectors and EGISpawner rely on:

- server-set ``uid``, ``resourceVersion``, ``creationTimestamp``, ``namespace``;
- list with ``metadata.resourceVersion``; watch from a resource version (replaying the
  event log) or from "now" with synthetic ADDED events; ``timeoutSeconds``;
- label and field selectors on list and watch;
- create (409 on conflict), get, replace (PUT), merge/JSON patch, delete;
- Secret ``stringData`` folded into ``data``; claims Bound on creation;
- every created or replaced object validated strictly against Kubernetes 1.30 and 1.37
  (422 Invalid on a violation, and recorded in ``validation_errors``);
- fault injection (``inject_fault``): status codes and delays for chosen calls;
- a call log (``calls``) for counting API calls in tests and benchmarks.

User reactions added with kmock's DSL still take precedence over all of this.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import datetime
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import attrs
import jsonpatch
import kmock
from kmock._internal import apps, enums, rendering

from .selectors import field_matcher, label_matcher
from .validation import validation_errors

KINDS = {
    "pods": "Pod",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "secrets": "Secret",
    "events": "Event",
    "services": "Service",
    "configmaps": "ConfigMap",
    "namespaces": "Namespace",
}
VALIDATED = {"pods", "persistentvolumeclaims", "secrets"}
EVENT_LOG_SIZE = 20_000

Key = tuple[str, str | None, str]  # (plural, namespace, name)
Listener = Callable[[str, str, dict[str, Any]], None]


@dataclass
class Call:
    """One API call as the emulator saw it."""

    verb: str  # create, get, list, watch, replace, patch, delete
    plural: str
    namespace: str | None
    name: str | None
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """An injected failure: the next ``times`` matching calls get ``status`` after ``delay``."""

    verb: str | None = None
    plural: str | None = None
    name: str | None = None
    status: int | None = 500
    message: str = "injected fault"
    delay: float = 0.0
    times: int | None = 1  # None: forever
    hits: int = 0

    def matches(self, call: Call) -> bool:
        return (
            (self.times is None or self.hits < self.times)
            and self.verb in (None, call.verb)
            and self.plural in (None, call.plural)
            and self.name in (None, call.name)
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch (also used for strategic merge: good enough for metadata/data)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


@attrs.define(kw_only=True)
class K8sEmulator(kmock.KubernetesEmulator):
    """See the module docstring. Use ``async with K8sEmulator() as k8s, kmock.Server(k8s):``."""

    validate: bool = True
    store: dict[Key, dict[str, Any]] = attrs.field(factory=dict, init=False)
    calls: list[Call] = attrs.field(factory=list, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    validation_errors: list[str] = attrs.field(factory=list, init=False)
    listeners: list[Listener] = attrs.field(factory=list, init=False)
    _rv: itertools.count = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _log: collections.deque = attrs.field(
        factory=lambda: collections.deque(maxlen=EVENT_LOG_SIZE), init=False
    )
    _watchers: list[tuple[Call, Callable[[dict], bool], asyncio.Queue]] = attrs.field(
        factory=list, init=False
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock maps no action to PUT; serve it as a replace.
        self.fallback[enums.method.PUT] << self._serve_replace

    # ----- request plumbing -------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> Any:
        request = self._watch_as_watch(request)
        try:
            return await self._handle_resource(request)
        finally:
            # kmock keeps every request and matches each new one against its reactions by
            # scanning that whole history (O(requests so far) per request): forget answered
            # requests, or a long run measures the history instead of the client. Our own
            # record is ``calls``.
            self._requests[:] = [r for r in self._requests if r is not request]

    def _watch_as_watch(self, request: rendering.Request) -> rendering.Request:
        """kubernetes_asyncio sends watch=True; kmock only recognises watch=true. kmock
        matches reactions by request identity, so the recorded request is swapped too."""
        watch = request.params.get("watch", "").lower() in ("true", "1")
        if request.resource is None or request.method != enums.method.GET or not watch:
            return request
        fixed = attrs.evolve(request, action=enums.action.WATCH)
        self._requests[:] = [fixed if r is request else r for r in self._requests]
        return fixed

    async def _handle_resource(self, request: rendering.Request) -> Any:
        if request.resource is None:  # discovery, /version ...
            return await super()._handle(request)
        call = self._call_of(request)
        self.calls.append(call)
        for fault in self.faults:
            if fault.matches(call):
                fault.hits += 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status:
                    raise _error(fault.status, "Injected", fault.message)
                break
        # Skip KubernetesEmulator._handle: it mutates its own store even when a user reaction
        # answers the request (so an injected 500 would still create the object).
        return await apps.RawHandler._handle(self, request)

    @staticmethod
    def _call_of(request: rendering.Request) -> Call:
        verbs = {
            enums.action.CREATE: "create",
            enums.action.FETCH: "get",
            enums.action.LIST: "list",
            enums.action.WATCH: "watch",
            enums.action.UPDATE: "patch",
            enums.action.DELETE: "delete",
        }
        verb = verbs.get(request.action) or (
            "replace" if request.method == enums.method.PUT else str(request.method)
        )
        plural = request.resource.plural if request.resource else ""
        return Call(verb, plural, request.namespace, request.name, dict(request.params))

    # ----- the store --------------------------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> None:
        self._last_rv = next(self._rv)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._last_rv)

    def _emit(self, kind: str, plural: str, obj: dict[str, Any]) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self._log.append((self._last_rv, plural, event))
        for call, match, queue in self._watchers:
            if call.plural == plural and match(obj):
                queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(kind, plural, obj)

    def _matcher(self, call: Call) -> Callable[[dict], bool]:
        labels = label_matcher(call.params.get("labelSelector"))
        fields = field_matcher(call.params.get("fieldSelector"))
        namespace = call.namespace

        def match(obj: dict[str, Any]) -> bool:
            meta = obj.get("metadata", {})
            return (
                (namespace is None or meta.get("namespace") == namespace)
                and labels(meta.get("labels") or {})
                and fields(obj)
            )

        return match

    def _get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            return self.store[(plural, namespace, name)]
        except KeyError:
            raise _error(
                404, "NotFound", f'{plural} "{name}" not found', name=name, kind=plural
            ) from None

    def _check(self, plural: str, obj: dict[str, Any]) -> None:
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", KINDS.get(plural, plural.capitalize()))
        if self.validate and plural in VALIDATED:
            errors = validation_errors(obj)
            if errors:
                self.validation_errors.extend(errors)
                raise _error(422, "Invalid", "; ".join(errors))

    def put_object(self, plural: str, obj: dict[str, Any], namespace: str | None = None) -> dict:
        """Create an object directly (test set-up), with server fields; emits ADDED."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = namespace or meta.get("namespace")
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not name:
            raise _error(422, "Invalid", "metadata.name: Required value")
        key = (plural, namespace, name)
        if key in self.store:
            raise _error(
                409, "AlreadyExists", f'{plural} "{name}" already exists', name=name, kind=plural
            )
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", KINDS.get(plural, plural.capitalize()))
        if namespace is not None:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta.setdefault("generation", 1)
        self._server_side_defaults(plural, obj)
        self._bump(obj)
        self.store[key] = obj
        self._emit("ADDED", plural, obj)
        return obj

    @staticmethod
    def _server_side_defaults(plural: str, obj: dict[str, Any]) -> None:
        if plural == "secrets":
            string_data = obj.pop("stringData", None) or {}
            data = obj.setdefault("data", {}) or {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode()).decode()
            obj["data"] = data
        elif plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Bound"}
            obj.setdefault("spec", {}).setdefault("volumeName", "pv-" + obj["metadata"]["uid"])
        elif plural == "pods":
            obj["status"] = {"phase": "Pending"}

    def set_status(self, plural: str, namespace: str, name: str, status: dict) -> None:
        """What a controller or the kubelet does: replace ``status``; emits MODIFIED."""
        obj = self.store.get((plural, namespace, name))
        if obj is None:
            return
        obj["status"] = copy.deepcopy(status)
        self._bump(obj)
        self._emit("MODIFIED", plural, obj)

    def remove_object(self, plural: str, namespace: str | None, name: str) -> dict:
        obj = self._get(plural, namespace, name)
        del self.store[(plural, namespace, name)]
        obj["metadata"]["deletionTimestamp"] = _now()
        self._bump(obj)
        self._emit("DELETED", plural, obj)
        return obj

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            o for (p, ns, _), o in self.store.items() if p == plural and namespace in (None, ns)
        ]

    def inject_fault(self, **kwargs: Any) -> Fault:
        """Make matching calls fail; see :class:`Fault` for the fields."""
        fault = Fault(**kwargs)
        self.faults.append(fault)
        return fault

    def count(self, verb: str | None = None, plural: str | None = None) -> int:
        return sum(1 for c in self.calls if verb in (None, c.verb) and plural in (None, c.plural))

    # ----- serving ----------------------------------------------------------------------

    async def _serve_create(self, request: rendering.Request) -> dict[str, Any]:
        body = copy.deepcopy(request.data or {})
        plural = request.resource.plural
        meta = body.setdefault("metadata", {})
        if request.namespace:
            meta.setdefault("namespace", request.namespace)
        self._check(plural, body)
        return self.put_object(plural, body, request.namespace)

    async def _serve_fetch(self, request: rendering.Request) -> dict[str, Any]:
        return self._get(request.resource.plural, request.namespace, request.name)

    async def _serve_list(self, request: rendering.Request) -> dict[str, Any]:
        call = self._call_of(request)
        match = self._matcher(call)
        items = [o for o in self.objects(call.plural) if match(o)]
        kind = KINDS.get(call.plural, call.plural.capitalize())
        meta = {"resourceVersion": str(self._last_rv)}
        limit = int(call.params.get("limit") or 0)
        if limit > 0:  # pages in name order; "continue" is the last name of the previous page
            items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
            after = call.params.get("continue") or ""
            items = (
                [
                    o
                    for o in items
                    if (o["metadata"].get("namespace") or "", o["metadata"]["name"])
                    > tuple(after.split("/", 1))
                ]
                if after
                else items
            )
            if len(items) > limit:
                last = items[limit - 1]["metadata"]
                meta["continue"] = f"{last.get('namespace') or ''}/{last['name']}"
                items = items[:limit]
        return {"apiVersion": "v1", "kind": f"{kind}List", "metadata": meta, "items": items}

    async def _serve_replace(self, request: rendering.Request) -> dict[str, Any]:
        plural = request.resource.plural
        old = self._get(plural, request.namespace, request.name)
        body = copy.deepcopy(request.data or {})
        self._check(plural, body)
        wanted_rv = body.get("metadata", {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", "the object has been modified", name=request.name)
        for server_field in ("uid", "creationTimestamp", "namespace", "generation"):
            body["metadata"][server_field] = old["metadata"].get(server_field)
        self._server_side_defaults(plural, body)
        if plural in ("pods", "persistentvolumeclaims"):
            body["status"] = old.get("status", {})
        self._bump(body)
        self.store[(plural, request.namespace, request.name)] = body
        self._emit("MODIFIED", plural, body)
        return body

    async def _serve_update(self, request: rendering.Request) -> dict[str, Any]:
        plural = request.resource.plural
        obj = copy.deepcopy(self._get(plural, request.namespace, request.name))
        patch = request.data
        if isinstance(patch, list):
            obj = jsonpatch.apply_patch(obj, patch)
        elif isinstance(patch, dict):
            _merge(obj, patch)
        self._server_side_defaults(plural, obj) if plural == "secrets" else None
        self._bump(obj)
        self.store[(plural, request.namespace, request.name)] = obj
        self._emit("MODIFIED", plural, obj)
        return obj

    async def _serve_delete(self, request: rendering.Request) -> dict[str, Any]:
        return self.remove_object(request.resource.plural, request.namespace, request.name)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        yield b""  # send the headers now, as a real API server does
        call = self._call_of(request)
        match = self._matcher(call)
        queue: asyncio.Queue = asyncio.Queue()
        since = call.params.get("resourceVersion") or "0"
        # Fill the queue and subscribe without awaiting in between: no event is lost.
        if since == "0":
            for obj in self.objects(call.plural):
                if match(obj):
                    queue.put_nowait({"type": "ADDED", "object": copy.deepcopy(obj)})
        else:
            oldest = self._log[0][0] if self._log else self._last_rv + 1
            if int(since) < oldest - 1:
                status = {"kind": "Status", "code": 410, "reason": "Expired", "status": "Failure"}
                yield {"type": "ERROR", "object": status}
                return
            for rv, plural, event in self._log:
                if rv > int(since) and plural == call.plural and match(event["object"]):
                    queue.put_nowait(event)
        watcher = (call, match, queue)
        self._watchers.append(watcher)
        timeout = float(call.params.get("timeoutSeconds") or 0) or None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
                yield event
        finally:
            self._watchers.remove(watcher)
