{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "courier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: object name prefix, at most 63 characters (DNS label). */}}
{{- define "courier.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the driver shim's objects; short enough for the "-metrics" suffix. */}}
{{- define "courier.driverFullname" -}}
{{- printf "%s-driver" (include "courier.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{- define "courier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels; call with (dict "root" $ "component" "provider"). */}}
{{- define "courier.labels" -}}
helm.sh/chart: {{ include "courier.chart" .root }}
{{ include "courier.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: courier
{{- end }}

{{- define "courier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "courier.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "courier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "courier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "courier.hmacSecretName" -}}
{{- default (printf "%s-hmac-key" (include "courier.fullname" .)) .Values.hmacKey.existingSecret }}
{{- end }}

{{/* One image for both binaries. */}}
{{- define "courier.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Backends ---------------------------------------------------------------------------- */}}

{{/*
Which backends are on, as JSON {"vault":bool,"openbao":bool,"aws":bool,"gcp":bool,"azure":bool}: a backend is on when
its `enabled` value is true or its compatibility socket is in `providers`.
*/}}
{{- define "courier.backends" -}}
{{- $p := .Values.providers }}
{{- dict
      "vault" (or .Values.vault.enabled (has "vault" $p))
      "openbao" (or .Values.openbao.enabled (has "openbao" $p))
      "aws" (or .Values.aws.enabled (has "aws" $p))
      "gcp" (or .Values.gcp.enabled (has "gcp" $p))
      "azure" (or .Values.azure.enabled (has "azure" $p))
    | toJson }}
{{- end }}

{{/*
Audiences the driver must request pod tokens for, as a JSON list without duplicates: one per
enabled backend (two for AWS with Pod Identity) plus driver.extraTokenAudiences.
*/}}
{{- define "courier.tokenAudiences" -}}
{{- $b := include "courier.backends" . | fromJson }}
{{- $auds := list }}
{{- if $b.vault }}{{ $auds = append $auds .Values.vault.audience }}{{ end }}
{{- if $b.openbao }}{{ $auds = append $auds .Values.openbao.audience }}{{ end }}
{{- if $b.aws }}
{{- $auds = append $auds "sts.amazonaws.com" }}
{{- if .Values.aws.podIdentity }}{{ $auds = append $auds "pods.eks.amazonaws.com" }}{{ end }}
{{- end }}
{{- if $b.gcp }}{{ $auds = append $auds .Values.gcp.workloadPool }}{{ end }}
{{- if $b.azure }}{{ $auds = append $auds "api://AzureADTokenExchange" }}{{ end }}
{{- $auds = concat $auds .Values.driver.extraTokenAudiences | uniq }}
{{- toJson $auds }}
{{- end }}

{{/* Checks that the schema cannot express; rendered once, from the provider DaemonSet. */}}
{{- define "courier.validate" -}}
{{- $b := include "courier.backends" . | fromJson }}
{{- if not (or $b.vault $b.openbao $b.aws $b.gcp $b.azure) }}
{{- fail "no backend is enabled: set vault.enabled, openbao.enabled, aws.enabled, gcp.enabled or azure.enabled, or list vault, openbao, aws, gcp or azure in providers" }}
{{- end }}
{{- if and $b.gcp (not .Values.gcp.workloadPool) }}
{{- fail "gcp.workloadPool is required with GCP: the driver must request pod tokens for PROJECT_ID.svc.id.goog" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.driver.enabled (eq (int .Values.driver.livenessProbe.port) (int .Values.driver.healthPort)) }}
{{- fail "driver.healthPort must differ from driver.livenessProbe.port: both listen in the driver pod" }}
{{- end }}
{{- if and .Values.driver.enabled (eq (int .Values.driver.livenessProbe.port) (int .Values.driver.metricsPort)) }}
{{- fail "driver.metricsPort must differ from driver.livenessProbe.port: both listen in the driver pod" }}
{{- end }}
{{- end }}

{{/* Whether the provider reads pods' service accounts (IRSA, GKE, Entra workload identity annotations). */}}
{{- define "courier.readsServiceAccounts" -}}
{{- $b := include "courier.backends" . | fromJson }}
{{- if or $b.aws $b.gcp (and $b.azure .Values.azure.serviceAccountAnnotations) }}true{{ end }}
{{- end }}


{{- /*
The backends' settings, as environment of a courier-provider container: the node's DaemonSet and
the SecretSync controller's sidecar serve the same SecretProviderClasses, so they get the same.
*/}}
{{- define "courier.backendEnv" -}}
{{- $b := include "courier.backends" . | fromJson }}
{{- with .Values.vault.address }}
- name: VAULT_ADDR
  value: {{ . | quote }}
{{- end }}
{{- with .Values.aws.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.aws.podIdentityAgentUrl }}
- name: COURIER_POD_IDENTITY_AGENT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.gcp.workloadPool }}
- name: COURIER_GCP_WORKLOAD_POOL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.gcp.identityProvider }}
- name: COURIER_GCP_IDENTITY_PROVIDER
  value: {{ . | quote }}
{{- end }}
{{- if .Values.gcp.allowProviderAdc }}
- name: COURIER_GCP_ALLOW_PROVIDER_ADC
  value: "true"
{{- end }}
{{- if $b.azure }}
{{- with .Values.azure.authorityHost }}
- name: AZURE_AUTHORITY_HOST
  value: {{ . | quote }}
{{- end }}
{{- with .Values.azure.keyvaultEndpoint }}
- name: COURIER_AZURE_KEYVAULT_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.azure.cloudEnvHostDir }}
- name: COURIER_AZURE_CLOUD_ENV_DIR
  value: {{ . | quote }}
{{- end }}
{{- if .Values.azure.caConfigMap }}
- name: COURIER_AZURE_CA_FILE
  value: /etc/courier/azure-ca/ca.crt
{{- end }}
{{- if .Values.azure.allowNodePublishSecret }}
- name: COURIER_AZURE_ALLOW_NODE_PUBLISH_SECRET
  value: "true"
{{- end }}
{{- if not .Values.azure.constructPemChain }}
- name: COURIER_AZURE_CONSTRUCT_PEM_CHAIN
  value: "false"
{{- end }}
{{- end }}
{{- end }}

{{- /*
Files the backends' settings point at (Azure's custom cloud files and CA), as volume mounts of a
courier-provider container and as volumes of its pod: the node's DaemonSet and the SecretSync
controller's sidecar get the same, since they get the same settings (courier.backendEnv).
*/}}
{{- define "courier.backendVolumeMounts" -}}
{{- $b := include "courier.backends" . | fromJson }}
{{- if and $b.azure .Values.azure.cloudEnvHostDir }}
- name: azure-cloud-env
  mountPath: {{ .Values.azure.cloudEnvHostDir }}
  readOnly: true
{{- end }}
{{- if and $b.azure .Values.azure.caConfigMap }}
- name: azure-ca
  mountPath: /etc/courier/azure-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "courier.backendVolumes" -}}
{{- $b := include "courier.backends" . | fromJson }}
{{- if and $b.azure .Values.azure.cloudEnvHostDir }}
- name: azure-cloud-env
  hostPath:
    path: {{ .Values.azure.cloudEnvHostDir }}
    type: Directory
{{- end }}
{{- if and $b.azure .Values.azure.caConfigMap }}
- name: azure-ca
  configMap:
    name: {{ .Values.azure.caConfigMap }}
    items:
      - key: {{ .Values.azure.caConfigMapKey }}
        path: ca.crt
{{- end }}
{{- end }}
