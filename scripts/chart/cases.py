"""Value sets the chart is rendered with, and value sets it must refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Value sets that must render and keep every promise (promises.py).
GOOD: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all-providers": {
        "providers": ["courier", "vault", "openbao", "aws"],
        "vault": {"address": "https://vault.vault.svc:8200"},
        "aws": {"region": "eu-west-1"},
    },
    "token-verification-off": {
        "tokenVerification": {"mode": "off"},
    },
    "token-verification-required-issuers": {
        "tokenVerification": {
            "mode": "required",
            "issuers": ["https://kubernetes.default.svc.cluster.local", "https://oidc.example.com/id/X"],
        },
    },
    "driver-sync-secret": {
        "driver": {"enabled": True, "syncSecret": {"enabled": True}},
    },
    "aws-pod-identity": {
        "providers": ["aws"],
        "vault": {"enabled": False},
        "aws": {"region": "us-east-1", "podIdentity": True},
        "driver": {
            "enabled": True,
            # One duplicate of a backend audience (dropped) and one extra.
            "extraTokenAudiences": ["sts.amazonaws.com", "api://custom"],
        },
    },
    "gcp-workload-identity": {
        "providers": ["gcp", "courier"],
        "vault": {"enabled": False},
        "gcp": {
            "workloadPool": "my-project.svc.id.goog",
            "identityProvider": "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/c1",
        },
        "driver": {"enabled": True},
    },
    "azure-workload-identity": {
        "providers": ["azure", "courier"],
        "vault": {"enabled": False},
        "driver": {"enabled": True},
    },
    "azure-clientid-only": {
        "azure": {
            "enabled": True,
            "serviceAccountAnnotations": False,
            "authorityHost": "https://login.microsoftonline.us/",
            "keyvaultEndpoint": "https://{vault}.privatelink.vaultcore.azure.net",
            "cloudEnvHostDir": "/etc/kubernetes/azure-clouds",
            "allowNodePublishSecret": True,
            "constructPemChain": False,
            "caConfigMap": "azure-stack-ca",
            "caConfigMapKey": "root.pem",
        },
        "tokenVerification": {"mode": "off"},
    },
    "secret-sync-azure-stack": {
        "providers": ["azure", "courier"],
        "vault": {"enabled": False},
        "azure": {"cloudEnvHostDir": "/etc/kubernetes/azure-clouds", "caConfigMap": "azure-stack-ca"},
        "secretSync": {"enabled": True},
    },
    "gcp-provider-adc": {
        "gcp": {"enabled": True, "workloadPool": "my-project.svc.id.goog", "allowProviderAdc": True},
        "rbac": {"create": False},
    },
    "service-monitor": {
        "openbao": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "prom"}}},
        "driver": {"enabled": True, "installCRDs": False, "republishErrors": "fail"},
    },
    "one-port-and-tuning": {
        "health": {"port": 9090},
        "metrics": {"port": 9090},
        "lease": {"reuseFraction": 0.5, "renew": False, "sweepInterval": "1m", "revokeGrace": "15m"},
        "backendConcurrency": 16,
        "shutdownTimeout": "25s",
        "hmacKey": {"existingSecret": "my-hmac"},
        "serviceAccount": {"create": False, "name": "provider-sa"},
        "image": {"tag": "1.2.3", "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-node-critical",
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "vault-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/courier/ca", "readOnly": True}],
        "aws": {"enabled": True, "podIdentityAgentUrl": "http://169.254.170.23/v1/credentials"},
        "rbac": {"create": False},
    },
    "secret-sync": {
        "secretSync": {"enabled": True, "replicas": 3, "minRefreshInterval": "1m"},
        "aws": {"enabled": True, "region": "eu-west-1"},
    },
    "secret-sync-gcp": {
        "secretSync": {"enabled": True},
        "gcp": {"enabled": True, "workloadPool": "my-project.svc.id.goog"},
    },
    "secret-sync-own-audiences": {
        "secretSync": {"enabled": True, "installCRD": False, "tokenAudiences": ["vault", "api://custom"]},
        "rbac": {"create": False},
    },
    "minimal-driver": {
        "metrics": {"enabled": False},
        "rbac": {"create": False},
        "log": {"format": "text", "level": "debug"},
        "driver": {
            "enabled": True,
            "enableSecretRotation": False,
            "additionalProvidersDir": "",
            "kubeletRootDir": "/var/lib/k0s/kubelet/",
            "name": "courier.secrets-store.example.com",
            "extraArgs": ["--log-level=debug"],
        },
    },
    # Every operator override of both DaemonSets, and the monitoring objects.
    "overrides-and-monitoring": {
        "imagePullSecrets": [{"name": "regcred"}],
        "podLabels": {"team": "platform"},
        "podAnnotations": {"example.com/owner": "platform"},
        "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 0},
        "securityContext": {
            "runAsUser": 0,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 30, "failureThreshold": 6},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 10},
        "extraArgs": ["--log-filter=h2=debug"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Courier"}},
        "driver": {
            "enabled": True,
            "extraArgs": ["--log-filter=tonic=debug"],
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "podLabels": {"team": "storage", "tier": "node"},
            "podAnnotations": {"example.com/shim": "yes"},
            "imagePullSecrets": [{"name": "shim-regcred"}],
            "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "securityContext": {"privileged": True, "runAsUser": 0, "readOnlyRootFilesystem": True},
            "probe": {"httpGet": {"path": "/healthz", "port": 9808}, "periodSeconds": 20, "timeoutSeconds": 5},
        },
    },
}

# Value sets values.schema.json must reject: (what, values).
BAD_SCHEMA: list[tuple[str, dict[str, Any]]] = [
    ("unknown provider", {"providers": ["gcs"]}),
    ("gcp workloadPool not a pool", {"gcp": {"enabled": True, "workloadPool": "my-project"}}),
    ("azure keyvaultEndpoint without {vault}", {"azure": {"enabled": True, "keyvaultEndpoint": "https://kv.example"}}),
    ("azure authorityHost over http", {"azure": {"enabled": True, "authorityHost": "http://login.example"}}),
    ("unknown republishErrors", {"driver": {"republishErrors": "maybe"}}),
    ("unknown top-level key", {"provider": ["courier"]}),
    ("unknown nested key", {"driver": {"syncSecrets": {"enabled": True}}}),
    ("no providers", {"providers": []}),
    ("duplicate provider", {"providers": ["vault", "vault"]}),
    ("duration with a space", {"mountTimeout": "45 seconds"}),
    ("port 0", {"health": {"port": 0}}),
    ("port as string", {"metrics": {"port": "8095"}}),
    ("unknown pullPolicy", {"image": {"pullPolicy": "Sometimes"}}),
    ("reuseFraction above 1", {"lease": {"reuseFraction": 2}}),
    ("renew as a word", {"lease": {"renew": "yes"}}),
    ("unknown token verification mode", {"tokenVerification": {"mode": "sometimes"}}),
    ("issuer with a comma", {"tokenVerification": {"issuers": ["https://a,https://b"]}}),
    ("address without scheme", {"vault": {"address": "vault:8200"}}),
    ("tmpfsSize with a space", {"driver": {"tmpfsSize": "16 MB"}}),
    ("enabled as a string", {"driver": {"enabled": "true"}}),
    ("non-string label", {"metrics": {"serviceMonitor": {"labels": {"release": 1}}}}),
    ("extraArgs without a dash", {"driver": {"extraArgs": ["log-level=debug"]}}),
    ("relative providersDir", {"providersDir": "var/run/x"}),
    ("empty audience", {"vault": {"audience": ""}}),
    ("bad log format", {"log": {"format": "xml"}}),
    ("bad image digest", {"image": {"digest": "sha256:xyz"}}),
    ("azure caConfigMap not a name", {"azure": {"enabled": True, "caConfigMap": "../ca"}}),
    ("secretSync with 0 replicas", {"secretSync": {"enabled": True, "replicas": 0}}),
    ("secretSync unknown key", {"secretSync": {"enable": True}}),
    ("probe with an unknown key", {"livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "period": 5}}),
    ("provider extraArgs without a dash", {"extraArgs": ["log-filter=h2=debug"]}),
    ("shim pull secret without a name", {"driver": {"imagePullSecrets": [{"secret": "x"}]}}),
    ("shim probe timeout 0", {"driver": {"probe": {"timeoutSeconds": 0}}}),
    ("unknown prometheusRule key", {"prometheusRule": {"enable": True}}),
    ("dashboard label not a string", {"dashboard": {"labels": {"grafana_dashboard": 1}}}),
    ("securityContext as a list", {"securityContext": ["privileged"]}),
]

# Value sets that pass the schema but that the templates must refuse with a message: (what,
# values, a phrase the message must contain).
BAD_RENDER: list[tuple[str, dict[str, Any], str]] = [
    ("no backend", {"vault": {"enabled": False}}, "no backend is enabled"),
    ("gcp without a workload pool", {"providers": ["gcp"]}, "gcp.workloadPool is required"),
    (
        "serviceMonitor without metrics",
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        "needs metrics.enabled",
    ),
    (
        "shim health port on the livenessprobe's",
        {"driver": {"enabled": True, "healthPort": 9808}},
        "driver.healthPort must differ",
    ),
]


def example_value_files(root: Path) -> dict[str, dict[str, Any]]:
    """The chart values shipped under examples/ (helm-values-*.yaml)."""
    return {
        f"examples/{p.name}": yaml.safe_load(p.read_text()) or {}
        for p in sorted((root / "examples").glob("helm-values-*.yaml"))
    }
