"""Strict schema validation of the manifests clients send, with kubernetes-validate.

``kubernetes_validate.validate`` re-reads the 1.8 MB definitions file on every call; the
emulator validates every create and replace, so the validators are built once per
(version, kind) here, from the same schema files the library ships.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

# Versions whose schemas kubernetes-validate 1.37.0 ships (it raises a bare IndexError for
# versions older than its oldest); the issue asks for the oldest supported one we target
# and the newest.
VERSIONS = ("1.30.0", "1.37.0")


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validation_errors(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of ``manifest`` for every version in VERSIONS (strict)."""
    errors = []
    for version in VERSIONS:
        validator = _validator(version, manifest["kind"], manifest["apiVersion"])
        for error in validator.iter_errors(manifest):
            path = ".".join(str(p) for p in error.absolute_path) or "<root>"
            errors.append(f"k8s {version[:4]}: {manifest['kind']} {path}: {error.message}")
    return errors
