#!/usr/bin/env python3
"""Offline checks of charts/courier, no cluster needed.

Lints the chart with the real Helm library, renders it for several value sets, validates every
rendered object against the Kubernetes 1.30 and 1.37 schemas (strict) or our own CRD schemas,
runs yamllint on the output, checks values.schema.json accepts good and rejects bad values,
and asserts the promises in promises.py. The last line is "N passed, M failed"; the exit code
is non-zero on any failure.

Usage: scripts/chart-check.sh [-v]   (this file expects the venv that script prepares)
"""

from __future__ import annotations

import argparse
import base64
import copy
import sys
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import yaml

import validate
from cases import BAD_RENDER, BAD_SCHEMA, GOOD, example_value_files
from fake_apiserver import FakeApiServer
from promises import check_all
from render import NAMESPACE, RELEASE, Rendered, from_manifests, render
from report import Report

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "courier"
KUBE_VERSIONS = ("1.30", "1.37")
HMAC_SECRET = f"{RELEASE}-hmac-key"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every check, not only failures")
    args = parser.parse_args()
    started = time.monotonic()
    r = Report(verbose=args.verbose)
    chart = helm.Chart.load(str(CHART))
    crds = [yaml.safe_load(p.read_text()) for p in sorted((CHART / "files").glob("crds*/*.yaml"))]
    custom = validate.CustomKinds(crds)

    lint(r)
    static_yaml(r)
    crd_files(r, crds)
    schema(r, chart)
    cases = dict(GOOD)
    cases.update(example_value_files(ROOT))
    for name, values in cases.items():
        rendered_case(r, chart, custom, name, values)
    refused_renders(r, chart)
    hmac_key_reuse(r, chart)
    examples(r, custom)

    for s in r.skipped:
        print(f"  skipped on purpose: {s}")
    print(f"chart checks took {time.monotonic() - started:.1f}s")
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


def lint(r: Report) -> None:
    r.section("helm lint (strict)")
    value_sets = {"defaults": None, "driver": GOOD["driver-sync-secret"], "aws": GOOD["aws-pod-identity"]}
    for kube in KUBE_VERSIONS:
        for label, values in value_sets.items():
            report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{kube}.0", namespace=NAMESPACE)
            problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
            r.check(f"lint {label} on {kube}", not problems, "; ".join(str(p.get("error")) for p in problems))


def static_yaml(r: Report) -> None:
    r.section("yamllint of the chart's plain YAML files")
    files = [CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "files").glob("crds*/*.yaml"))]
    files += sorted((ROOT / "examples").glob("helm-values-*.yaml"))
    for f in files:
        problems = validate.yamllint(f.read_text())
        r.check(f"yamllint {f.relative_to(ROOT)}", not problems, "; ".join(problems))


def crd_files(r: Report, crds: list[dict[str, Any]]) -> None:
    r.section("CRD manifests")
    for crd in crds:
        name = crd["metadata"]["name"]
        for kube in KUBE_VERSIONS:
            err = validate.kubernetes(crd, kube)
            r.check(f"{name} valid CustomResourceDefinition on {kube}", err is None, err or "")
        for ver in crd["spec"]["versions"]:
            bad = validate.unstructural_nodes(ver["schema"]["openAPIV3Schema"])
            r.equal(f"{name} {ver['name']}: structural schema (every node typed)", bad, [])
    kinds = {c["spec"]["names"]["kind"]: c for c in crds}
    spc = kinds.get("SecretProviderClass", {}).get("spec", {}).get("versions", [{}])[0]
    spec = spc.get("schema", {}).get("openAPIV3Schema", {}).get("properties", {}).get("spec", {}).get("properties", {})
    r.equal("SPC spec fields", sorted(spec), ["parameters", "provider", "secretObjects"])
    r.equal("SPC parameters are map[string]string", spec.get("parameters", {}).get("additionalProperties"), {"type": "string"})
    item = spec.get("secretObjects", {}).get("items", {}).get("properties", {})
    r.equal("SPC secretObjects fields", sorted(item), ["annotations", "data", "labels", "secretName", "type"])
    r.equal("SPC secretObjects data fields", sorted(item.get("data", {}).get("items", {}).get("properties", {})), ["key", "objectName"])
    secretsync_crd(r, kinds.get("SecretSync", {}))
    spcps = kinds.get("SecretProviderClassPodStatus", {}).get("spec", {}).get("versions", [{}])[0]
    top = spcps.get("schema", {}).get("openAPIV3Schema", {}).get("properties", {})
    r.check("SPCPS has status and no spec", "status" in top and "spec" not in top)
    r.equal(
        "SPCPS status fields",
        sorted(top.get("status", {}).get("properties", {})),
        ["mounted", "objects", "podName", "secretProviderClassName", "targetPath"],
    )


def secretsync_crd(r: Report, crd: dict[str, Any]) -> None:
    """The SecretSync CRD: its fields, a status subresource, and its schema taking good objects and
    refusing bad ones (the API server's validation, offline)."""
    r.equal("SecretSync group", crd.get("spec", {}).get("group"), "courier.dev")
    r.equal("SecretSync is namespaced", crd.get("spec", {}).get("scope"), "Namespaced")
    ver = crd.get("spec", {}).get("versions", [{}])[0]
    r.equal("SecretSync has a status subresource", ver.get("subresources"), {"status": {}})
    props = ver.get("schema", {}).get("openAPIV3Schema", {}).get("properties", {})
    spec = props.get("spec", {}).get("properties", {})
    r.equal(
        "SecretSync spec fields",
        sorted(spec),
        ["audiences", "refreshInterval", "refreshPolicy", "secretProviderClassName", "serviceAccountRef", "target"],
    )
    target = spec.get("target", {}).get("properties", {})
    r.equal("SecretSync creationPolicy values", target.get("creationPolicy", {}).get("enum"), ["Owner", "Orphan"])
    r.equal("SecretSync deletionPolicy values", target.get("deletionPolicy", {}).get("enum"), ["Retain", "Delete"])
    r.equal(
        "SecretSync refreshPolicy values",
        spec.get("refreshPolicy", {}).get("enum"),
        ["Periodic", "CreatedOnce", "OnChange"],
    )
    status = props.get("status", {}).get("properties", {})
    r.check("SecretSync status has no data field", not {"data", "stringData", "values"} & set(status))
    custom = validate.CustomKinds([crd])
    base = {
        "apiVersion": "courier.dev/v1alpha1",
        "kind": "SecretSync",
        "metadata": {"name": "db", "namespace": "team-a"},
        "spec": {
            "secretProviderClassName": "db",
            "serviceAccountRef": {"name": "app"},
            "refreshInterval": "1h30m",
            "target": {"creationPolicy": "Orphan", "deletionPolicy": "Delete", "secretObjects": [
                {"secretName": "db", "type": "Opaque", "data": [{"objectName": "password", "key": "pass"}]},
            ]},
        },
    }
    r.equal("a full SecretSync passes the CRD schema", custom.validate(base), None)
    bad = [
        ("no service account", {"serviceAccountRef": None}),
        ("unknown creationPolicy", {"target": {"creationPolicy": "Merge"}}),
        ("unknown refreshPolicy", {"refreshPolicy": "Always"}),
        ("interval with a space", {"refreshInterval": "1 h"}),
        ("unknown spec field", {"serviceAccount": "app"}),
    ]
    for what, change in bad:
        obj = copy.deepcopy(base)
        for k, v in change.items():
            if v is None:
                obj["spec"].pop(k, None)
            else:
                obj["spec"][k] = v
        r.check(f"the CRD schema refuses a SecretSync with {what}", custom.validate(obj) is not None)


def schema(r: Report, chart: helm.Chart) -> None:
    r.section("values.schema.json")
    doc = chart.schema or {}
    r.check("the chart ships a schema", bool(doc))
    validator = jsonschema.Draft7Validator(doc)
    defaults = chart.values
    errors = [e.message for e in validator.iter_errors(defaults)]
    r.equal("values.yaml passes its own schema", errors, [])
    missing = undocumented(doc, defaults, doc)
    r.equal("every schema property has a default in values.yaml", missing, [])
    readme = (CHART / "README.md").read_text() if (CHART / "README.md").exists() else ""
    r.equal("README.md describes every value", [p for p in leaf_paths(defaults) if f"`{p}`" not in readme], [])
    good = dict(GOOD)
    good.update(example_value_files(ROOT))
    for name, values in good.items():
        try:
            chart.validate_schema(values)
            helm_ok, detail = True, ""
        except helm.HelmValuesError as e:
            helm_ok, detail = False, str(e)
        r.check(f"accepts {name} (Helm)", helm_ok, detail)
        merged = chart.merge_values(values)
        errors = [e.message for e in validator.iter_errors(merged)]
        r.equal(f"accepts {name} (jsonschema)", errors, [])
    for what, values in BAD_SCHEMA:
        try:
            chart.validate_schema(values)
            rejected = False
        except helm.HelmValuesError:
            rejected = True
        r.check(f"rejects {what} (Helm)", rejected, f"{values} was accepted")
        r.check(
            f"rejects {what} (jsonschema)",
            not validator.is_valid(chart.merge_values(values)),
            f"{values} was accepted",
        )


def undocumented(node: dict[str, Any], values: Any, root: dict[str, Any], path: str = "") -> list[str]:
    """Schema properties with no key in values.yaml (`global` is Helm's, not ours)."""
    node = resolve(node, root)
    if not isinstance(values, dict) or "properties" not in node:
        return []
    missing = []
    for key, child in node["properties"].items():
        if (key == "global" and not path) or f"{path}{key}" in FREE_FORM:
            continue
        if key not in values:
            missing.append(f"{path}{key}")
        elif f"{path}{key}" not in FREE_FORM:
            missing += undocumented(child, values[key], root, f"{path}{key}.")
    return missing


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def leaf_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted value names a reader sets: leaves, plus maps and lists as a whole."""
    out = []
    for key, val in values.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict) and val and path not in FREE_FORM:
            out += leaf_paths(val, f"{path}.")
        else:
            out.append(path)
    return out


# Values that are Kubernetes objects in their own right, documented as a whole.
FREE_FORM = {"affinity", "nodeSelector", "updateStrategy", "resources", "driver.resources",
             "driver.registrar.resources", "driver.livenessProbe.resources",
             "securityContext", "podSecurityContext", "livenessProbe", "readinessProbe",
             "driver.securityContext", "driver.podSecurityContext", "driver.probe", "dashboard.labels"}


def rendered_case(r: Report, chart: helm.Chart, custom: validate.CustomKinds, name: str, values: dict[str, Any]) -> None:
    r.section(f"render {name}")
    try:
        out = render(chart, values)
    except helm.HelmError as e:
        r.check(f"{name}: renders", False, str(e))
        return
    r.check(f"{name}: renders", bool(out.objects))
    problems = validate.yamllint(out.text)
    r.check(f"{name}: yamllint of the rendered output", not problems, "; ".join(problems[:5]))
    validate_objects(r, custom, name, out.objects)
    check_all(r, chart.merge_values(values), out)


def validate_objects(r: Report, custom: validate.CustomKinds, name: str, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        what = f"{name}: {obj['kind']}/{obj['metadata'].get('name')}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        if custom.knows(obj):
            err = custom.validate(obj)
            r.check(f"{what} valid against our CRD", err is None, err or "")
            continue
        if key in validate.NO_SCHEMA:
            r.skip(f"{key[1]} ({key[0]}): no schema offline; its structure is asserted in promises.py and overrides.py instead")
            continue
        for kube in KUBE_VERSIONS:
            try:
                err = validate.kubernetes(obj, kube)
            except validate.Unvalidated as e:
                r.check(f"{what}: has a schema", False, str(e))
                break
            r.check(f"{what} valid on {kube} (strict)", err is None, err or "")


def refused_renders(r: Report, chart: helm.Chart) -> None:
    r.section("values the templates refuse")
    for what, values, phrase in BAD_RENDER:
        try:
            render(chart, values)
            r.check(f"refuses {what}", False, "rendered without error")
        except helm.HelmError as e:
            r.check(f"refuses {what}", phrase in str(e), f"message lacks {phrase!r}: {e}")


def hmac_key(out: Rendered) -> bytes:
    secret = out.named("Secret", HMAC_SECRET) or {}
    return base64.b64decode(secret.get("data", {}).get("key", ""))


def hmac_key_reuse(r: Report, chart: helm.Chart) -> None:
    """An upgrade must keep the key already in the cluster; a first install makes a new one."""
    r.section("HMAC key kept across upgrades (lookup against a fake API server)")
    existing = b"an-existing-key-of-32-bytes-----"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": HMAC_SECRET, "namespace": NAMESPACE},
        "data": {"key": base64.b64encode(existing).decode()},
    }
    scenarios = [
        ("upgrade reuses the existing key", {(NAMESPACE, HMAC_SECRET): secret}, True),
        ("install without a Secret makes a new key", {}, False),
        ("a Secret without `key` gets a new key", {(NAMESPACE, HMAC_SECRET): {**secret, "data": {}}}, False),
    ]
    for what, secrets, reused in scenarios:
        with FakeApiServer(secrets) as api:
            with helm.Config(kube_apiserver=api.url, kube_token="test", namespace=NAMESPACE) as cfg:
                out = from_manifests(cfg.render(chart, {}, name=RELEASE, namespace=NAMESPACE, is_upgrade=True))
            key = hmac_key(out)
            r.check(f"{what}: looked up", f"/api/v1/namespaces/{NAMESPACE}/secrets/{HMAC_SECRET}" in api.requests)
            if reused:
                r.equal(what, key, existing)
            else:
                r.check(what, len(key) >= 16 and key != existing, f"key {key!r}")


def examples(r: Report, custom: validate.CustomKinds) -> None:
    r.section("examples/*.yaml objects and CRD samples")
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        if path.name.startswith("helm-values-"):
            continue
        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        validate_objects(r, custom, f"examples/{path.name}", objects)
    status = {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClassPodStatus",
        "metadata": {"name": "app-team-a-app-secrets", "namespace": "team-a"},
        "status": {
            "podName": "app",
            "secretProviderClassName": "app-secrets",
            "mounted": True,
            "targetPath": "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount",
            "objects": [{"id": "db-password", "version": "v1"}],
        },
    }
    r.check("a driver-written SPCPS is valid", custom.validate(status) is None, custom.validate(status) or "")
    spc = {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1alpha1",
        "kind": "SecretProviderClass",
        "metadata": {"name": "x"},
        "spec": {
            "provider": "courier",
            "parameters": {"roleName": "app"},
            "secretObjects": [{"secretName": "s", "type": "Opaque", "data": [{"objectName": "a", "key": "b"}]}],
        },
    }
    r.check("a v1alpha1 SPC with secretObjects is valid", custom.validate(spc) is None, custom.validate(spc) or "")
    bad = [
        ("a non-string parameter", {"parameters": {"roleName": 1}}),
        ("a misspelt secretObjects field", {"secretObjects": [{"secretname": "s"}]}),
        ("a misspelt data field", {"secretObjects": [{"secretName": "s", "data": [{"objectname": "a"}]}]}),
        ("a provider list", {"provider": ["courier"]}),
    ]
    for what, spec in bad:
        obj = {**spc, "apiVersion": "secrets-store.csi.x-k8s.io/v1", "spec": spec}
        r.check(f"SPC CRD rejects {what}", custom.validate(obj) is not None)


if __name__ == "__main__":
    sys.exit(main())
