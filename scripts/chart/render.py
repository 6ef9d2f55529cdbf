"""Rendering the chart offline with the Helm SDK (helm-python-sdk, the real Helm Go library)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import helm_python as helm
import yaml

RELEASE = "courier"
NAMESPACE = "csi"
DOC_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


@dataclass
class Rendered:
    """One render: the manifests as `helm template` prints them, parsed objects, and NOTES."""

    text: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        return None

    def component(self, component: str) -> list[dict[str, Any]]:
        return [
            o
            for o in self.objects
            if o.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == component
        ]


def from_manifests(manifests: dict[str, str]) -> Rendered:
    """Joins rendered templates the way `helm template` does and parses them."""
    parts: list[str] = []
    notes = ""
    for path in sorted(manifests):
        body = manifests[path]
        if path.endswith("NOTES.txt"):
            notes = body
            continue
        # A template may hold several documents; split them so each gets its own header.
        for doc in DOC_SEPARATOR.split(body):
            doc = doc.strip("\n")
            if not doc.strip():
                continue
            parts.append(f"---\n# Source: {path}\n{doc}\n")
    text = "".join(parts)
    objects = [o for o in yaml.safe_load_all(text) if o]
    return Rendered(text=text, objects=objects, notes=notes)


def render(chart: helm.Chart, values: dict[str, Any]) -> Rendered:
    return from_manifests(chart.render(values, name=RELEASE, namespace=NAMESPACE))
