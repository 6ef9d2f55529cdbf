"""What the chart promises, asserted on one render. Expectations are computed here from the
values, independently of the templates."""

from __future__ import annotations

import base64
from typing import Any

import overrides
from render import NAMESPACE, RELEASE, Rendered
from report import Report

PROVIDER_ROLE_RULES = [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]}]
SHIM_ROLE_RULES = [
    {
        "apiGroups": ["secrets-store.csi.x-k8s.io"],
        "resources": ["secretproviderclasses"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["secrets-store.csi.x-k8s.io"],
        "resources": ["secretproviderclasspodstatuses"],
        "verbs": ["get", "create", "update"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
SECRETS_RULE = {
    "apiGroups": [""],
    "resources": ["secrets"],
    "verbs": ["get", "create", "update"],
}
# Where the chart mounts the Azure CA ConfigMap, and the file COURIER_AZURE_CA_FILE names.
AZURE_CA_DIR = "/etc/courier/azure-ca"
AZURE_CA_FILE = f"{AZURE_CA_DIR}/ca.crt"
# Volumes backing files the backends' settings name.
BACKEND_VOLUMES = ("azure-cloud-env", "azure-ca")
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CSIDriver", "CustomResourceDefinition"}


def backends(v: dict[str, Any]) -> dict[str, bool]:
    p = v["providers"]
    return {
        "vault": v["vault"]["enabled"] or "vault" in p,
        "openbao": v["openbao"]["enabled"] or "openbao" in p,
        "aws": v["aws"]["enabled"] or "aws" in p,
        "gcp": v["gcp"]["enabled"] or "gcp" in p,
        "azure": v["azure"]["enabled"] or "azure" in p,
    }


def reads_service_accounts(v: dict[str, Any]) -> bool:
    b = backends(v)
    return b["aws"] or b["gcp"] or (b["azure"] and v["azure"]["serviceAccountAnnotations"])


def audiences(v: dict[str, Any]) -> list[str]:
    b = backends(v)
    want: list[str] = []
    if b["vault"]:
        want.append(v["vault"]["audience"])
    if b["openbao"]:
        want.append(v["openbao"]["audience"])
    if b["aws"]:
        want.append("sts.amazonaws.com")
        if v["aws"]["podIdentity"]:
            want.append("pods.eks.amazonaws.com")
    if b["gcp"]:
        want.append(v["gcp"]["workloadPool"])
    if b["azure"]:
        want.append("api://AzureADTokenExchange")
    for a in v["driver"]["extraTokenAudiences"]:
        if a not in want:
            want.append(a)
    return want


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in containers(obj) if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def check_all(r: Report, v: dict[str, Any], out: Rendered) -> None:
    """v: the merged values (chart defaults coalesced with the case's values)."""
    provider(r, v, out)
    provider_rbac(r, v, out)
    hmac_secret(r, v, out)
    metrics(r, v, out)
    if v["driver"]["enabled"]:
        shim(r, v, out)
    else:
        no_shim(r, out)
    privilege_only_on_shim(r, out)
    secrets_rbac(r, v, out)
    secret_sync(r, v, out)
    wiring(r, v, out)
    notes(r, v, out)
    overrides.check_all(r, v, out)


def provider(r: Report, v: dict[str, Any], out: Rendered) -> None:
    ds = [d for d in out.of_kind("DaemonSet") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "provider"]
    if not r.equal("one provider DaemonSet", len(ds), 1):
        return
    d = ds[0]
    pod = d["spec"]["template"]["spec"]
    c = container(d, "provider")
    sc = c.get("securityContext", {})
    r.check("provider: not privileged", sc.get("privileged") is not True)
    r.equal("provider: drops ALL capabilities", sc.get("capabilities"), {"drop": ["ALL"]})
    r.equal("provider: readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem"), True)
    r.equal("provider: allowPrivilegeEscalation false", sc.get("allowPrivilegeEscalation"), False)
    r.equal("provider: runs as root for the socket dir", sc.get("runAsUser"), 0)
    r.equal("provider: seccomp RuntimeDefault", sc.get("seccompProfile"), {"type": "RuntimeDefault"})
    r.check("provider: no hostNetwork/hostPID", not pod.get("hostNetwork") and not pod.get("hostPID"))
    wants_api = reads_service_accounts(v) or v["tokenVerification"]["mode"] != "off"
    r.equal(
        "provider: API token only for AWS, GCP, Azure annotations or token verification",
        pod.get("automountServiceAccountToken"),
        wants_api,
    )

    env = env_of(c)
    r.equal("provider: COURIER_PROVIDERS", env.get("COURIER_PROVIDERS"), ",".join(v["providers"]))
    r.equal("provider: COURIER_PROVIDERS_DIR", env.get("COURIER_PROVIDERS_DIR"), "/provider")
    r.equal("provider: VAULT_ADDR", env.get("VAULT_ADDR"), v["vault"]["address"] or None)
    r.equal("provider: AWS_REGION", env.get("AWS_REGION"), v["aws"]["region"] or None)
    r.equal("provider: COURIER_HEALTH_ADDR", env.get("COURIER_HEALTH_ADDR"), f"0.0.0.0:{v['health']['port']}")
    want_metrics = f"0.0.0.0:{v['metrics']['port']}" if v["metrics"]["enabled"] else None
    r.equal("provider: COURIER_METRICS_ADDR", env.get("COURIER_METRICS_ADDR"), want_metrics)
    r.equal("provider: COURIER_LOG_FORMAT", env.get("COURIER_LOG_FORMAT"), v["log"]["format"])
    r.equal("provider: COURIER_HMAC_KEY_FILE", env.get("COURIER_HMAC_KEY_FILE"), "/etc/courier/hmac/key")
    r.equal("provider: COURIER_MOUNT_TIMEOUT", env.get("COURIER_MOUNT_TIMEOUT"), v["mountTimeout"])
    r.equal("provider: COURIER_STATIC_REUSE", env.get("COURIER_STATIC_REUSE"), v["staticReuse"])
    r.equal("provider: COURIER_TOKEN_VERIFICATION", env.get("COURIER_TOKEN_VERIFICATION"), v["tokenVerification"]["mode"])
    want_issuers = ",".join(v["tokenVerification"]["issuers"]) or None
    r.equal("provider: COURIER_SERVICE_ACCOUNT_ISSUER", env.get("COURIER_SERVICE_ACCOUNT_ISSUER"), want_issuers)
    lease_env = {
        "COURIER_LEASE_REUSE_FRACTION": v["lease"]["reuseFraction"],
        "COURIER_LEASE_RENEW": v["lease"]["renew"],
        "COURIER_LEASE_SWEEP_INTERVAL": v["lease"]["sweepInterval"],
        "COURIER_LEASE_REVOKE_GRACE": v["lease"]["revokeGrace"],
    }
    for name, value in lease_env.items():
        want = None if value == "" else (str(value).lower() if isinstance(value, bool) else str(value))
        r.equal(f"provider: {name} only when set", env.get(name), want)
    r.equal(
        "provider: COURIER_POD_IDENTITY_AGENT_URL only when set",
        env.get("COURIER_POD_IDENTITY_AGENT_URL"),
        v["aws"]["podIdentityAgentUrl"] or None,
    )
    r.equal("provider: COURIER_GCP_WORKLOAD_POOL only when set", env.get("COURIER_GCP_WORKLOAD_POOL"), v["gcp"]["workloadPool"] or None)
    r.equal(
        "provider: COURIER_GCP_IDENTITY_PROVIDER only when set",
        env.get("COURIER_GCP_IDENTITY_PROVIDER"),
        v["gcp"]["identityProvider"] or None,
    )
    r.equal(
        "provider: COURIER_GCP_ALLOW_PROVIDER_ADC only when allowed",
        env.get("COURIER_GCP_ALLOW_PROVIDER_ADC"),
        "true" if v["gcp"]["allowProviderAdc"] else None,
    )
    azure = backends(v)["azure"]
    azure_env = {
        "AZURE_AUTHORITY_HOST": v["azure"]["authorityHost"] or None,
        "COURIER_AZURE_KEYVAULT_ENDPOINT": v["azure"]["keyvaultEndpoint"] or None,
        "COURIER_AZURE_CLOUD_ENV_DIR": v["azure"]["cloudEnvHostDir"] or None,
        "COURIER_AZURE_ALLOW_NODE_PUBLISH_SECRET": "true" if v["azure"]["allowNodePublishSecret"] else None,
        "COURIER_AZURE_CONSTRUCT_PEM_CHAIN": None if v["azure"]["constructPemChain"] else "false",
        "COURIER_AZURE_CA_FILE": AZURE_CA_FILE if v["azure"]["caConfigMap"] else None,
    }
    for name, want in azure_env.items():
        r.equal(f"provider: {name} only with Azure and when set", env.get(name), want if azure else None)
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    want_cloud_dir = v["azure"]["cloudEnvHostDir"] if azure and v["azure"]["cloudEnvHostDir"] else None
    got = mounts.get("azure-cloud-env")
    r.equal(
        "provider: Azure cloud files mounted read-only only when set",
        (got["mountPath"], got.get("readOnly")) if got else None,
        (want_cloud_dir, True) if want_cloud_dir else None,
    )
    got = mounts.get("azure-ca")
    r.equal(
        "provider: Azure CA ConfigMap mounted read-only where COURIER_AZURE_CA_FILE points, only when set",
        (got["mountPath"], got.get("readOnly")) if got else None,
        (AZURE_CA_DIR, True) if azure and v["azure"]["caConfigMap"] else None,
    )
    ca_volume = {vol["name"]: vol for vol in pod.get("volumes", [])}.get("azure-ca")
    r.equal(
        "provider: Azure CA volume is the named ConfigMap's key as ca.crt",
        ca_volume.get("configMap") if ca_volume else None,
        {"name": v["azure"]["caConfigMap"], "items": [{"key": v["azure"]["caConfigMapKey"], "path": "ca.crt"}]}
        if azure and v["azure"]["caConfigMap"]
        else None,
    )
    r.check("provider: runs courier-provider", c.get("command") == ["/usr/local/bin/courier-provider"])

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    r.equal("provider: health port", ports.get("health"), v["health"]["port"])
    probes = (c.get("livenessProbe", {}).get("httpGet", {}), c.get("readinessProbe", {}).get("httpGet", {}))
    r.equal("provider: liveness /healthz on health", (probes[0].get("path"), probes[0].get("port")), ("/healthz", "health"))
    r.equal("provider: readiness /readyz on health", (probes[1].get("path"), probes[1].get("port")), ("/readyz", "health"))

    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {vol["name"]: vol for vol in pod.get("volumes", [])}
    pd = mounts.get("/provider")
    r.check(
        "provider: providersDir hostPath at /provider",
        pd is not None
        and volumes.get(pd["name"], {}).get("hostPath") == {"path": v["providersDir"], "type": "DirectoryOrCreate"},
    )
    host_paths = [vol["hostPath"]["path"] for vol in volumes.values() if "hostPath" in vol]
    cloud_dir = v["azure"]["cloudEnvHostDir"] if backends(v)["azure"] else ""
    r.equal(
        "provider: no hostPath but providersDir (and Azure's cloud file directory when set)",
        host_paths,
        [v["providersDir"]] + ([cloud_dir] if cloud_dir else []),
    )
    r.check(
        "provider: no mount propagation",
        all("mountPropagation" not in m for m in c.get("volumeMounts", [])),
    )
    hmac = mounts.get("/etc/courier/hmac")
    secret_name = v["hmacKey"]["existingSecret"] or f"{RELEASE}-hmac-key"
    r.check(
        "provider: HMAC key Secret mounted read-only",
        hmac is not None
        and hmac.get("readOnly") is True
        and volumes.get(hmac["name"], {}).get("secret", {}).get("secretName") == secret_name,
    )
    res = c.get("resources", {})
    r.equal("provider: resources from values", res, v["resources"])

    r.equal("provider: tolerations", pod.get("tolerations"), v["tolerations"] or None)
    r.equal("provider: nodeSelector", pod.get("nodeSelector"), v["nodeSelector"] or None)
    terms = pod.get("affinity", {}).get("nodeAffinity", {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", [])
    r.check(
        "provider: affinity excludes virtual-kubelet",
        any(
            e.get("key") == "type" and e.get("operator") == "NotIn" and "virtual-kubelet" in e.get("values", [])
            for t in terms
            for e in t.get("matchExpressions", [])
        ),
    )
    r.equal("provider: updateStrategy", d["spec"].get("updateStrategy"), v["updateStrategy"])
    r.equal("provider: priorityClassName", pod.get("priorityClassName"), v["priorityClassName"] or None)


def provider_rbac(r: Report, v: dict[str, Any], out: Rendered) -> None:
    roles = [o for o in out.component("provider") if o["kind"] in ("ClusterRole", "Role")]
    bindings = [o for o in out.component("provider") if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    if reads_service_accounts(v) and v["rbac"]["create"]:
        r.equal("provider RBAC: one ClusterRole with AWS, GCP or Azure annotations", [o["kind"] for o in roles], ["ClusterRole"])
        if roles:
            r.equal("provider RBAC: only get serviceaccounts", roles[0]["rules"], PROVIDER_ROLE_RULES)
        r.equal("provider RBAC: one binding", len(bindings), 1)
        if bindings:
            sa = v["serviceAccount"]["name"] or RELEASE
            r.equal(
                "provider RBAC: bound to the provider's ServiceAccount",
                bindings[0]["subjects"],
                [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}],
            )
    else:
        r.equal("provider RBAC: none without AWS or GCP (or rbac.create)", roles + bindings, [])


def hmac_secret(r: Report, v: dict[str, Any], out: Rendered) -> None:
    secrets = out.of_kind("Secret")
    if v["hmacKey"]["existingSecret"]:
        r.equal("HMAC: no Secret created with existingSecret", secrets, [])
        return
    if not r.equal("HMAC: one Secret", len(secrets), 1):
        return
    s = secrets[0]
    r.equal(
        "HMAC: resource-policy keep",
        s["metadata"].get("annotations", {}).get("helm.sh/resource-policy"),
        "keep",
    )
    key = base64.b64decode(s.get("data", {}).get("key", ""))
    r.check("HMAC: key of at least 16 bytes", len(key) >= 16, f"{len(key)} bytes")


def metrics(r: Report, v: dict[str, Any], out: Rendered) -> None:
    services = [s for s in out.of_kind("Service") if s["metadata"]["name"].endswith("-metrics")]
    monitors = out.of_kind("ServiceMonitor")
    if not v["metrics"]["enabled"]:
        r.equal("metrics: no Service or ServiceMonitor when off", services + monitors, [])
        return
    want = 2 if v["driver"]["enabled"] else 1
    r.equal("metrics: one headless Service per component", len(services), want)
    r.check("metrics: Services are headless", all(s["spec"].get("clusterIP") == "None" for s in services))
    r.equal("metrics: ServiceMonitor only when enabled", len(monitors), 1 if v["metrics"]["serviceMonitor"]["enabled"] else 0)
    for m in monitors:
        r.equal("ServiceMonitor: apiVersion", m["apiVersion"], "monitoring.coreos.com/v1")
        selected = [s for s in services if selects(m["spec"]["selector"], s["metadata"]["labels"])]
        r.equal("ServiceMonitor: selects every metrics Service", len(selected), len(services))
        for ep in m["spec"]["endpoints"]:
            r.check(
                f"ServiceMonitor: endpoint port {ep['port']!r} on each Service",
                all(any(p.get("name") == ep["port"] for p in s["spec"]["ports"]) for s in selected),
            )
        if v["metrics"]["serviceMonitor"]["interval"]:
            r.equal("ServiceMonitor: interval", m["spec"]["endpoints"][0].get("interval"), v["metrics"]["serviceMonitor"]["interval"])
        for k, val in v["metrics"]["serviceMonitor"]["labels"].items():
            r.equal(f"ServiceMonitor: label {k}", m["metadata"]["labels"].get(k), val)


def no_shim(r: Report, out: Rendered) -> None:
    shim_kinds = [
        o["kind"]
        for o in out.objects
        if o["kind"] in ("CSIDriver", "CustomResourceDefinition") and o not in out.component("secretsync")
    ]
    r.equal("no shim: no CSIDriver or CRDs", shim_kinds, [])
    r.equal("no shim: no driver objects", [f"{o['kind']}/{o['metadata']['name']}" for o in out.component("driver")], [])
    r.equal("no shim: one DaemonSet", len(out.of_kind("DaemonSet")), 1)


def shim(r: Report, v: dict[str, Any], out: Rendered) -> None:
    d = v["driver"]
    drivers = out.of_kind("CSIDriver")
    if r.equal("shim: one CSIDriver", len(drivers), 1):
        cd = drivers[0]
        spec = cd["spec"]
        r.equal("CSIDriver: name", cd["metadata"]["name"], d["name"])
        r.equal("CSIDriver: podInfoOnMount", spec.get("podInfoOnMount"), True)
        r.equal("CSIDriver: attachRequired", spec.get("attachRequired"), False)
        r.equal("CSIDriver: Ephemeral only", spec.get("volumeLifecycleModes"), ["Ephemeral"])
        r.equal("CSIDriver: requiresRepublish = enableSecretRotation", spec.get("requiresRepublish"), d["enableSecretRotation"])
        got = [t["audience"] for t in spec.get("tokenRequests", [])]
        r.equal("CSIDriver: tokenRequests = enabled backends' audiences", got, audiences(v))

    crds = out.of_kind("CustomResourceDefinition")
    if d["installCRDs"]:
        names = sorted(c["metadata"]["name"] for c in crds)
        r.equal(
            "CRDs: SecretProviderClass and SecretProviderClassPodStatus",
            names,
            [
                "secretproviderclasses.secrets-store.csi.x-k8s.io",
                "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io",
            ],
        )
        for c in crds:
            n = c["metadata"]["name"]
            r.equal(f"CRD {n}: kept on uninstall", c["metadata"].get("annotations", {}).get("helm.sh/resource-policy"), "keep")
            versions = {ver["name"]: ver for ver in c["spec"]["versions"]}
            r.check(f"CRD {n}: v1 served and stored", versions.get("v1", {}).get("served") is True and versions["v1"].get("storage") is True)
            r.check(
                f"CRD {n}: v1alpha1 served, deprecated",
                versions.get("v1alpha1", {}).get("served") is True
                and versions["v1alpha1"].get("deprecated") is True
                and versions["v1alpha1"].get("storage") is False,
            )
            r.check(f"CRD {n}: no status subresource", all("subresources" not in ver for ver in versions.values()))
    else:
        r.equal("CRDs: none with installCRDs=false", crds, [])

    ds = [x for x in out.of_kind("DaemonSet") if x["metadata"]["labels"]["app.kubernetes.io/component"] == "driver"]
    if not r.equal("shim: one driver DaemonSet", len(ds), 1):
        return
    pod = ds[0]["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    r.equal("shim: containers", names, ["node-driver-registrar", "driver", "liveness-probe"])
    c = container(ds[0], "driver")
    r.equal("shim: privileged", c.get("securityContext", {}).get("privileged"), True)
    r.check("shim: runs courier-driver-shim", c.get("command") == ["/usr/local/bin/courier-driver-shim"])
    kubelet = d["kubeletRootDir"].rstrip("/")
    want_args = [
        "--endpoint=unix:///csi/csi.sock",
        "--node-id=$(KUBE_NODE_NAME)",
        f"--driver-name={d['name']}",
        "--providers-dir=/var/run/secrets-store-csi-providers",
    ]
    if d["additionalProvidersDir"]:
        want_args.append("--additional-providers-dir=/etc/kubernetes/secrets-store-csi-providers")
    want_args += [
        f"--enable-secret-rotation={str(d['enableSecretRotation']).lower()}",
        f"--rotation-poll-interval={d['rotationPollInterval']}",
        f"--republish-errors={d['republishErrors']}",
        f"--tmpfs-size={d['tmpfsSize']}",
        f"--kubelet-pods-dir={kubelet}/pods",
        f"--sync-secrets={str(d['syncSecret']['enabled']).lower()}",
    ]
    if v["metrics"]["enabled"]:
        want_args.append(f"--metrics-addr=0.0.0.0:{d['metricsPort']}")
    want_args.append(f"--health-addr=0.0.0.0:{d['healthPort']}")
    want_args.append(f"--log-level={v['log']['level']}")
    if v["log"]["format"] == "json":
        want_args.append("--log-json")
    want_args += d["extraArgs"]
    r.equal("shim: args", c.get("args"), want_args)
    node_env = next((e for e in c.get("env", []) if e["name"] == "KUBE_NODE_NAME"), {})
    r.equal(
        "shim: KUBE_NODE_NAME from spec.nodeName",
        node_env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath"),
        "spec.nodeName",
    )
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {vol["name"]: vol for vol in pod["volumes"]}
    pods_mount = mounts.get(f"{kubelet}/pods", {})
    r.equal("shim: <kubeletRootDir>/pods Bidirectional", pods_mount.get("mountPropagation"), "Bidirectional")
    r.equal(
        "shim: pods dir is the host's",
        volumes.get(pods_mount.get("name"), {}).get("hostPath", {}).get("path"),
        f"{kubelet}/pods",
    )
    csi = mounts.get("/csi", {})
    r.equal(
        "shim: plugin dir at /csi",
        volumes.get(csi.get("name"), {}).get("hostPath", {}).get("path", "").rstrip("/"),
        f"{kubelet}/plugins/csi-secrets-store",
    )
    prov = mounts.get("/var/run/secrets-store-csi-providers", {})
    r.equal(
        "shim: providersDir shared with the provider",
        volumes.get(prov.get("name"), {}).get("hostPath", {}).get("path"),
        v["providersDir"],
    )
    extra = mounts.get("/etc/kubernetes/secrets-store-csi-providers")
    r.equal(
        "shim: additional providers dir only when set",
        volumes.get(extra["name"], {}).get("hostPath", {}).get("path") if extra else "",
        d["additionalProvidersDir"],
    )
    live = c.get("livenessProbe", {}).get("httpGet", {})
    r.equal("shim: liveness /healthz on the livenessprobe port", (live.get("path"), live.get("port")), ("/healthz", d["livenessProbe"]["port"]))

    reg = container(ds[0], "node-driver-registrar")
    r.equal("registrar: image", reg["image"], d["registrar"]["image"])
    r.check(
        "registrar: kubelet registration path",
        f"--kubelet-registration-path={kubelet}/plugins/csi-secrets-store/csi.sock" in reg.get("args", []),
    )
    reg_mount = next((m for m in reg["volumeMounts"] if m["mountPath"] == "/registration"), {})
    r.equal(
        "registrar: registration dir",
        volumes.get(reg_mount.get("name"), {}).get("hostPath", {}).get("path", "").rstrip("/"),
        f"{kubelet}/plugins_registry",
    )
    lp = container(ds[0], "liveness-probe")
    r.equal("livenessprobe: image", lp["image"], d["livenessProbe"]["image"])
    r.check(
        "livenessprobe: serves the probed port",
        f"--http-endpoint=0.0.0.0:{d['livenessProbe']['port']}" in lp.get("args", []),
    )
    for side in (reg, lp):
        sc = side.get("securityContext", {})
        r.check(f"{side['name']}: unprivileged, drops ALL", sc.get("privileged") is not True and sc.get("capabilities") == {"drop": ["ALL"]})

    roles = [o for o in out.component("driver") if o["kind"] in ("ClusterRole", "Role")]
    if v["rbac"]["create"]:
        want = SHIM_ROLE_RULES + ([SECRETS_RULE] if d["syncSecret"]["enabled"] else [])
        r.equal("shim RBAC: one ClusterRole", len(roles), 1)
        if roles:
            r.equal("shim RBAC: exactly the rules it needs", roles[0]["rules"], want)
    else:
        r.equal("shim RBAC: none with rbac.create=false", roles, [])


def privilege_only_on_shim(r: Report, out: Rendered) -> None:
    privileged, bidirectional = [], []
    for ds in out.of_kind("DaemonSet"):
        for c in containers(ds):
            where = f"{ds['metadata']['name']}/{c['name']}"
            if c.get("securityContext", {}).get("privileged"):
                privileged.append(where)
            if any(m.get("mountPropagation") == "Bidirectional" for m in c.get("volumeMounts", [])):
                bidirectional.append(where)
    want = [f"{RELEASE}-driver/driver"] if out.of_kind("CSIDriver") else []
    r.equal("privileged containers: the shim only", privileged, want)
    r.equal("Bidirectional propagation: the shim only", bidirectional, want)


def secrets_rbac(r: Report, v: dict[str, Any], out: Rendered) -> None:
    grants = [
        o["metadata"]["name"]
        for o in out.objects
        if o["kind"] in ("ClusterRole", "Role")
        for rule in o.get("rules", [])
        if "secrets" in rule.get("resources", []) or "*" in rule.get("resources", [])
    ]
    d = v["driver"]
    want = [f"{RELEASE}-driver"] if d["enabled"] and d["syncSecret"]["enabled"] and v["rbac"]["create"] else []
    if v["secretSync"]["enabled"] and v["rbac"]["create"]:
        want.append(f"{RELEASE}-secretsync")
    r.equal("RBAC on secrets: only with driver.syncSecret or secretSync", sorted(grants), sorted(want))
    wildcards = [
        o["metadata"]["name"]
        for o in out.objects
        if o["kind"] in ("ClusterRole", "Role")
        for rule in o.get("rules", [])
        if "*" in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", [])
    ]
    r.equal("RBAC: no wildcards", wildcards, [])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(k) != val for k, val in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        has, val = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if op == "In" and val not in e["values"]:
            return False
        if op == "NotIn" and has and val in e["values"]:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def wiring(r: Report, v: dict[str, Any], out: Rendered) -> None:
    """References between rendered objects resolve."""
    service_accounts = {o["metadata"]["name"] for o in out.of_kind("ServiceAccount")}
    if not v["serviceAccount"]["create"]:
        service_accounts.add(v["serviceAccount"]["name"] or "default")
    daemonsets = out.of_kind("DaemonSet")
    for ds in daemonsets:
        n = ds["metadata"]["name"]
        pod = ds["spec"]["template"]["spec"]
        labels = ds["spec"]["template"]["metadata"]["labels"]
        r.check(f"{n}: selector matches its pods", selects(ds["spec"]["selector"], labels))
        volumes = {vol["name"] for vol in pod.get("volumes", [])}
        for c in containers(ds):
            missing = [m["name"] for m in c.get("volumeMounts", []) if m["name"] not in volumes]
            r.equal(f"{n}/{c['name']}: mounts name existing volumes", missing, [])
            named = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str):
                    r.check(f"{n}/{c['name']}: {probe} port {port!r} is declared", port in named)
        sa = pod.get("serviceAccountName")
        if sa:
            r.check(f"{n}: ServiceAccount {sa} is rendered", sa in service_accounts)
    for svc in out.of_kind("Service"):
        n = svc["metadata"]["name"]
        backing = [ds for ds in daemonsets if selects({"matchLabels": svc["spec"]["selector"]}, ds["spec"]["template"]["metadata"]["labels"])]
        r.equal(f"Service {n}: selects one DaemonSet", len(backing), 1)
        for ds in backing:
            declared = {p["containerPort"] for c in containers(ds) for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                r.check(f"Service {n}: targetPort {p['targetPort']} is a container port", p["targetPort"] in declared)
    for b in out.of_kind("ClusterRoleBinding"):
        role = b["roleRef"]["name"]
        r.check(f"ClusterRoleBinding {b['metadata']['name']}: role is rendered", out.named("ClusterRole", role) is not None)
    for o in out.objects:
        meta = o["metadata"]
        where = f"{o['kind']}/{meta['name']}"
        if o["kind"] in CLUSTER_SCOPED:
            r.check(f"{where}: cluster-scoped, no namespace", "namespace" not in meta)
        else:
            r.equal(f"{where}: in the release namespace", meta.get("namespace"), NAMESPACE)
        long_labels = [k for k, val in meta.get("labels", {}).items() if len(str(val)) > 63]
        r.equal(f"{where}: label values fit 63 characters", long_labels, [])


def notes(r: Report, v: dict[str, Any], out: Rendered) -> None:
    text = out.notes
    r.check("NOTES: says how to check /readyz", "/readyz" in text)
    for p in v["providers"]:
        r.check(f"NOTES: lists {p}.sock", f"{p}.sock" in text)
    if not v["driver"]["enabled"]:
        for a in audiences(v):
            r.check(f"NOTES: names tokenRequests audience {a}", f"audience: {a}" in text and f"audience={a}" in text)
    r.check("NOTES: next step is a SecretProviderClass", "SecretProviderClass" in text)


def secret_sync(r: Report, v: dict[str, Any], out: Rendered) -> None:
    """The SecretSync controller: present only when enabled; a Deployment running the controller
    with courier-provider as a sidecar on a pod-local socket directory, leader election on its
    own Lease, and RBAC with exactly the verbs it uses."""
    s = v["secretSync"]
    objects = out.component("secretsync")
    if not s["enabled"]:
        r.equal("no secretSync: no SecretSync objects", [o["kind"] for o in objects], [])
        return
    deployment = out.named("Deployment", f"{RELEASE}-secretsync")
    if not r.check("secretSync: a Deployment", deployment is not None):
        return
    r.equal("secretSync: replicas", deployment["spec"]["replicas"], s["replicas"])
    pod = deployment["spec"]["template"]["spec"]
    r.equal("secretSync: controller and provider containers", [c["name"] for c in pod["containers"]], ["controller", "provider"])
    controller = container(deployment, "controller")
    args = controller.get("args", [])
    r.check("secretSync: runs the secret-sync subcommand", "secret-sync" in args)
    r.check(
        "secretSync: leader election on its own Lease",
        f"--lease-name={RELEASE}-secretsync" in args,
    )
    audiences = [a.split("=", 1)[1] for a in args if a.startswith("--token-audience=")]
    r.check("secretSync: at least one token audience", bool(audiences))
    if s["tokenAudiences"]:
        r.equal("secretSync: the audiences asked for", audiences, s["tokenAudiences"])
    env = {e["name"] for e in controller.get("env", [])}
    r.check("secretSync: POD_NAME and POD_NAMESPACE from the downward API", {"POD_NAME", "POD_NAMESPACE"} <= env)
    # The sidecar serves the same SecretProviderClasses as the node's provider: same backend settings.
    sidecar = container(deployment, "provider")
    node = out.named("DaemonSet", RELEASE)
    if node is not None:
        node_env = {e["name"]: e.get("value") for e in container(node, "provider").get("env", [])}
        sidecar_env = {e["name"]: e.get("value") for e in sidecar.get("env", [])}
        backend_env = {
            k: val for k, val in node_env.items()
            if k.startswith(("VAULT_", "AWS_", "AZURE_", "COURIER_GCP_", "COURIER_AZURE_", "COURIER_POD_IDENTITY"))
            or k in {e["name"] for e in v["extraEnv"]}
        }
        r.equal(
            "secretSync: the provider sidecar has the DaemonSet's backend settings and extraEnv",
            {k: sidecar_env.get(k) for k in backend_env},
            backend_env,
        )
        r.equal("secretSync: the provider sidecar has extraArgs", sidecar.get("args", []), list(v["extraArgs"]))
        mounts = {m["name"] for m in sidecar.get("volumeMounts", [])}
        r.check(
            "secretSync: the provider sidecar mounts extraVolumeMounts",
            {m["name"] for m in v["extraVolumeMounts"]} <= mounts,
        )
        # The files those settings point at: the same mounts, from the same volumes.
        node_pod = node["spec"]["template"]["spec"]
        node_mounts = {m["name"]: m for m in container(node, "provider").get("volumeMounts", [])}
        node_volumes = {vol["name"]: vol for vol in node_pod.get("volumes", [])}
        sidecar_mounts = {m["name"]: m for m in sidecar.get("volumeMounts", [])}
        sidecar_volumes = {vol["name"]: vol for vol in pod.get("volumes", [])}
        for name in BACKEND_VOLUMES:
            r.equal(f"secretSync: the provider sidecar mounts {name} as the DaemonSet does", sidecar_mounts.get(name), node_mounts.get(name))
            r.equal(f"secretSync: volume {name} as the DaemonSet's", sidecar_volumes.get(name), node_volumes.get(name))
    volumes = {vol["name"]: vol for vol in pod.get("volumes", [])}
    r.check("secretSync: provider sockets in the pod, not on the host", "emptyDir" in volumes.get("providers-dir", {}))
    r.check(
        "secretSync: no hostPath but the operator's own extraVolumes (and Azure's cloud file directory when set)",
        not any(
            "hostPath" in vol
            for name, vol in volumes.items()
            if name not in {e["name"] for e in v["extraVolumes"]} | {"azure-cloud-env"}
        ),
    )
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        r.equal(f"secretSync {c['name']}: drops ALL capabilities", sc.get("capabilities"), {"drop": ["ALL"]})
        r.check(f"secretSync {c['name']}: not privileged", sc.get("privileged") is not True)
    crd = out.named("CustomResourceDefinition", "secretsyncs.courier.dev")
    r.equal("secretSync: CRD only with installCRD", crd is not None, bool(s["installCRD"]))
    if not v["rbac"]["create"]:
        r.equal("secretSync: no RBAC without rbac.create", [o["kind"] for o in objects if "Role" in o["kind"]], [])
        return
    role = out.named("ClusterRole", f"{RELEASE}-secretsync")
    if not r.check("secretSync: a ClusterRole", role is not None):
        return
    grants = sorted((g, res, verb) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"] for verb in rule["verbs"])
    want = [
        ("", "events", "create"),
        ("", "secrets", "create"),
        ("", "secrets", "delete"),
        ("", "secrets", "get"),
        ("", "secrets", "update"),
        ("", "serviceaccounts/token", "create"),
        ("courier.dev", "secretsyncs", "get"),
        ("courier.dev", "secretsyncs", "list"),
        ("courier.dev", "secretsyncs", "watch"),
        ("courier.dev", "secretsyncs/status", "patch"),
        ("secrets-store.csi.x-k8s.io", "secretproviderclasses", "get"),
        ("secrets-store.csi.x-k8s.io", "secretproviderclasses", "list"),
        ("secrets-store.csi.x-k8s.io", "secretproviderclasses", "watch"),
    ]
    if reads_service_accounts(v):
        want.append(("", "serviceaccounts", "get"))
    r.equal("secretSync: ClusterRole grants exactly what it uses", grants, sorted(want))
    r.check(
        "secretSync: the reason for serviceaccounts/token is written next to it",
        "serviceaccounts/token" in out.text and "TokenRequest" in out.text,
    )
    leader = out.named("Role", f"{RELEASE}-secretsync-leader")
    if r.check("secretSync: a Role for its Lease", leader is not None):
        named = [rule for rule in leader["rules"] if rule.get("resourceNames")]
        r.equal("secretSync: get/update only its own Lease", [rule["resourceNames"] for rule in named], [[f"{RELEASE}-secretsync"]])

