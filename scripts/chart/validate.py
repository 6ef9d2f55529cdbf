"""Offline schema validation: Kubernetes built-in kinds (kubernetes-validate, strict), our own
CRDs' openAPIV3Schema for custom kinds, and yamllint."""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
from yamllint import linter
from yamllint.config import YamlLintConfig

# Every schema file is several MB of JSON; load each once instead of once per object.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

# Relaxed rules without line length. Helm's toYaml writes block sequences unindented while the
# templates indent theirs, so sequence indentation may differ between the two.
YAMLLINT = YamlLintConfig(
    "extends: relaxed\n"
    "rules:\n"
    "  line-length: disable\n"
    "  indentation: {spaces: consistent, indent-sequences: whatever}\n"
)

# Custom kinds that neither Kubernetes nor this chart defines a schema for. They are skipped
# here on purpose; promises.py checks their structure (selector and port wiring) instead.
NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


class Unvalidated(Exception):
    """A kind with no schema anywhere: neither built in nor one of our CRDs."""


def kubernetes(obj: dict[str, Any], version: str) -> str | None:
    """Validates a built-in kind strictly (unknown fields rejected); returns the error or None.

    Raises Unvalidated for kinds Kubernetes does not define.
    """
    try:
        kv.validate(obj, version, strict=True)
        return None
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(root)"
        return f"{path}: {e.message}"
    except kv.SchemaNotFoundError as e:
        raise Unvalidated(e.message) from None


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 (structural) schema -> JSON schema that rejects unknown fields, as the API
    server's strict field validation (kubectl's default) does."""
    out = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        # `metadata` is a bare `type: object` (the API server checks it), so it stays open.
        props = node.get("properties")
        if props is not None:
            node.setdefault("additionalProperties", False)
            for child in props.values():
                walk(child)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(out)
    return out


def unstructural_nodes(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of schema nodes without a `type` (a CRD schema must be structural)."""
    bad = [] if "type" in schema else [path or "(root)"]
    for name, child in schema.get("properties", {}).items():
        bad += unstructural_nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        bad += unstructural_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        bad += unstructural_nodes(schema["additionalProperties"], f"{path}{{}}")
    return bad


class CustomKinds:
    """Validators for the custom kinds our CRDs define, per (apiVersion, kind)."""

    def __init__(self, crds: list[dict[str, Any]]) -> None:
        self.validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
        for crd in crds:
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                self.validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)

    def knows(self, obj: dict[str, Any]) -> bool:
        return (obj.get("apiVersion"), obj.get("kind")) in self.validators

    def validate(self, obj: dict[str, Any]) -> str | None:
        validator = self.validators[(obj["apiVersion"], obj["kind"])]
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        if not errors:
            return None
        e = errors[0]
        return f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}"


def yamllint(text: str) -> list[str]:
    """yamllint problems (relaxed rules, no line length) as 'line:col level message'."""
    return [f"{p.line}:{p.column} {p.level} {p.message}" for p in linter.run(text, YAMLLINT)]
