"""Promises about the operator overrides (security contexts, probes, extra args and env, pod
labels and annotations, pull secrets) of both DaemonSets, and the monitoring objects
(PrometheusRule, dashboard ConfigMap): each value renders exactly where it belongs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from render import Rendered
from report import Report

CHART = Path(__file__).resolve().parents[2] / "charts" / "courier"


def _daemonset(out: Rendered, component: str) -> dict[str, Any] | None:
    found = [d for d in out.of_kind("DaemonSet") if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found[0] if len(found) == 1 else None


def _container(ds: dict[str, Any], name: str) -> dict[str, Any]:
    return next((c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == name), {})


def _env_tail(c: dict[str, Any], n: int) -> list[dict[str, Any]]:
    env = c.get("env", [])
    return env[len(env) - n:] if n else []


def check_all(r: Report, v: dict[str, Any], out: Rendered) -> None:
    provider(r, v, out)
    if v["driver"]["enabled"]:
        shim(r, v, out)
    monitoring(r, v, out)


def provider(r: Report, v: dict[str, Any], out: Rendered) -> None:
    ds = _daemonset(out, "provider")
    if not r.check("overrides: one provider DaemonSet", ds is not None):
        return
    pod = ds["spec"]["template"]["spec"]
    meta = ds["spec"]["template"]["metadata"]
    c = _container(ds, "provider")
    r.equal("provider override: podSecurityContext", pod.get("securityContext"), v["podSecurityContext"] or None)
    r.equal("provider override: securityContext", c.get("securityContext"), v["securityContext"] or None)
    r.equal("provider override: livenessProbe", c.get("livenessProbe"), v["livenessProbe"] or None)
    r.equal("provider override: readinessProbe", c.get("readinessProbe"), v["readinessProbe"] or None)
    r.equal("provider override: extraArgs are the args", c.get("args"), v["extraArgs"] or None)
    r.equal("provider override: extraEnv last in env", _env_tail(c, len(v["extraEnv"])), v["extraEnv"])
    for k, val in v["podLabels"].items():
        r.equal(f"provider override: pod label {k}", meta["labels"].get(k), val)
    r.equal("provider override: podAnnotations", meta.get("annotations"), v["podAnnotations"] or None)
    r.equal("provider override: imagePullSecrets", pod.get("imagePullSecrets"), v["imagePullSecrets"] or None)


def shim(r: Report, v: dict[str, Any], out: Rendered) -> None:
    d = v["driver"]
    ds = _daemonset(out, "driver")
    if not r.check("overrides: one shim DaemonSet", ds is not None):
        return
    pod = ds["spec"]["template"]["spec"]
    meta = ds["spec"]["template"]["metadata"]
    c = _container(ds, "driver")
    r.equal("shim override: podSecurityContext", pod.get("securityContext"), d["podSecurityContext"] or None)
    r.equal("shim override: securityContext", c.get("securityContext"), d["securityContext"] or None)
    if d["probe"]:
        r.equal("shim override: probe", c.get("livenessProbe"), d["probe"])
    else:
        r.equal(
            "shim default probe: the livenessprobe sidecar",
            c.get("livenessProbe", {}).get("httpGet"),
            {"path": "/healthz", "port": d["livenessProbe"]["port"]},
        )
    r.equal("shim override: extraArgs last in args", c.get("args", [])[len(c.get("args", [])) - len(d["extraArgs"]):], d["extraArgs"])
    r.equal("shim override: extraEnv last in env", _env_tail(c, len(d["extraEnv"])), d["extraEnv"])
    labels = {**v["podLabels"], **d["podLabels"]}
    for k, val in labels.items():
        r.equal(f"shim override: pod label {k}", meta["labels"].get(k), val)
    annotations = {**v["podAnnotations"], **d["podAnnotations"]}
    r.equal("shim override: podAnnotations", meta.get("annotations"), annotations or None)
    secrets = v["imagePullSecrets"] + d["imagePullSecrets"]
    r.equal("shim override: imagePullSecrets", pod.get("imagePullSecrets"), secrets or None)


def monitoring(r: Report, v: dict[str, Any], out: Rendered) -> None:
    rules = out.of_kind("PrometheusRule")
    r.equal("PrometheusRule only when enabled", len(rules), 1 if v["prometheusRule"]["enabled"] else 0)
    if rules:
        want = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())["groups"]
        r.equal("PrometheusRule: the tested rules file", rules[0]["spec"].get("groups"), want)
        for k, val in v["prometheusRule"]["labels"].items():
            r.equal(f"PrometheusRule: label {k}", rules[0]["metadata"]["labels"].get(k), val)
    boards = [m for m in out.of_kind("ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]
    r.equal("dashboard ConfigMap only when enabled", len(boards), 1 if v["dashboard"]["enabled"] else 0)
    if boards:
        want = json.loads((CHART / "files" / "dashboards" / "courier.json").read_text())
        got = boards[0].get("data", {}).get("courier.json", "")
        r.equal("dashboard: the shipped JSON", json.loads(got) if got else None, want)
        for k, val in v["dashboard"]["labels"].items():
            r.equal(f"dashboard: label {k}", boards[0]["metadata"]["labels"].get(k), val)
