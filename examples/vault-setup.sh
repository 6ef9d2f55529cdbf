#!/usr/bin/env bash
# Configures Vault or OpenBao for Courier: pod login with the cluster's service-account tokens
# (jwt or kubernetes auth), a role bound to one namespace, service account and audience, a
# policy, and the KV, database (PostgreSQL) and PKI engines for static and dynamic secrets.
# The README's "Setting up Vault or OpenBao" walks through it; a test runs this file as written
# against OpenBao and then mounts through Courier (tests/tests/operations/setup_guide.rs).
#
# Run it with an admin token (VAULT_ADDR/VAULT_TOKEN, or BAO_ADDR/BAO_TOKEN). Every setting
# below can be overridden from the environment. Safe to re-run: engines and auth methods
# already enabled are kept, and roles and policies are rewritten.
set -euo pipefail

CLI=${CLI:-vault}                       # `vault`, or `bao` for OpenBao
AUTH=${AUTH:-jwt}                       # `jwt` or `kubernetes`
AUTH_PATH=${AUTH_PATH:-$AUTH}           # the SecretProviderClass's vaultAuthMountPath
NAMESPACE=${NAMESPACE:-team-a}          # the application's namespace
SERVICE_ACCOUNT=${SERVICE_ACCOUNT:-app} # and its service account
AUDIENCE=${AUDIENCE:-vault}             # must be in the CSIDriver's tokenRequests
ROLE=${ROLE:-app}                       # the SecretProviderClass's roleName
POLICY=${POLICY:-$ROLE}
KV_PATH=${KV_PATH:-secret}
# jwt: the cluster's issuer (`kubectl get --raw /.well-known/openid-configuration`, "issuer"),
# and either its public keys as PEM (kubeadm: /etc/kubernetes/pki/sa.pub) or, when the issuer
# is reachable from Vault (EKS, GKE, AKS), nothing: Vault then discovers the keys itself.
ISSUER=${ISSUER:-https://kubernetes.default.svc.cluster.local}
ISSUER_PUBKEY_FILE=${ISSUER_PUBKEY_FILE:-}
# kubernetes: the API server Vault sends TokenReviews to, and its CA certificate.
KUBERNETES_HOST=${KUBERNETES_HOST:-https://kubernetes.default.svc}
KUBERNETES_CA_FILE=${KUBERNETES_CA_FILE:-/var/run/secrets/kubernetes.io/serviceaccount/ca.crt}
# A token of a service account bound to `system:auth-delegator`, which Vault presents to the API
# server's TokenReview endpoint (empty when Vault runs in the cluster and uses its own).
REVIEWER_JWT_FILE=${REVIEWER_JWT_FILE:-}
# Dynamic secrets: leave PG_HOST empty to skip the database engine, PKI_DOMAIN to skip PKI.
PG_HOST=${PG_HOST:-}
PG_PORT=${PG_PORT:-5432}
PG_DATABASE=${PG_DATABASE:-postgres}
PG_USER=${PG_USER:-vault_admin}
PG_PASSWORD=${PG_PASSWORD:-}
PKI_DOMAIN=${PKI_DOMAIN:-example.internal}

enabled() { # enabled <secrets|auth> <path>: whether something is mounted at <path>/
  "$CLI" "$1" list -format=json | grep "\"$2/\"" >/dev/null # not -q: an early exit would fail the pipe
}

# 1. Pod login with the service-account tokens the CSI driver passes.
enabled auth "$AUTH_PATH" || "$CLI" auth enable -path="$AUTH_PATH" "$AUTH"
if [[ $AUTH == jwt ]]; then
  if [[ -n $ISSUER_PUBKEY_FILE ]]; then
    "$CLI" write "auth/$AUTH_PATH/config" bound_issuer="$ISSUER" jwt_validation_pubkeys=@"$ISSUER_PUBKEY_FILE"
  else
    "$CLI" write "auth/$AUTH_PATH/config" bound_issuer="$ISSUER" oidc_discovery_url="$ISSUER"
  fi
  "$CLI" write "auth/$AUTH_PATH/role/$ROLE" \
    role_type=jwt \
    user_claim=sub \
    bound_subject="system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT" \
    bound_audiences="$AUDIENCE" \
    token_policies="$POLICY" \
    token_ttl=20m token_max_ttl=1h
else
  reviewer=()
  [[ -n $REVIEWER_JWT_FILE ]] && reviewer=(token_reviewer_jwt=@"$REVIEWER_JWT_FILE" disable_local_ca_jwt=true)
  "$CLI" write "auth/$AUTH_PATH/config" \
    kubernetes_host="$KUBERNETES_HOST" \
    kubernetes_ca_cert=@"$KUBERNETES_CA_FILE" \
    "${reviewer[@]}"
  "$CLI" write "auth/$AUTH_PATH/role/$ROLE" \
    bound_service_account_names="$SERVICE_ACCOUNT" \
    bound_service_account_namespaces="$NAMESPACE" \
    audience="$AUDIENCE" \
    token_policies="$POLICY" \
    token_ttl=20m token_max_ttl=1h
fi

# 2. What the role may read: its KV subtree, its database credentials, its certificates.
"$CLI" policy write "$POLICY" - <<HCL
path "$KV_PATH/data/$ROLE/*" {
  capabilities = ["read"]
}
path "database/creds/$ROLE" {
  capabilities = ["read"]
}
path "pki/issue/$ROLE" {
  capabilities = ["update"]
}
HCL

# 3. Static secrets: KV version 2.
enabled secrets "$KV_PATH" || "$CLI" secrets enable -path="$KV_PATH" -version=2 kv

# 4. Dynamic database credentials (PostgreSQL).
if [[ -n $PG_HOST ]]; then
  enabled secrets database || "$CLI" secrets enable database
  "$CLI" write database/config/postgres \
    plugin_name=postgresql-database-plugin \
    connection_url="postgresql://{{username}}:{{password}}@$PG_HOST:$PG_PORT/$PG_DATABASE?sslmode=disable" \
    username="$PG_USER" password="$PG_PASSWORD" \
    allowed_roles="$ROLE"
  "$CLI" write "database/roles/$ROLE" \
    db_name=postgres \
    creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';" \
    revocation_statements="DROP ROLE IF EXISTS \"{{name}}\";" \
    default_ttl=1h max_ttl=24h
fi

# 5. Dynamic certificates (PKI), from a root made here; use an intermediate in production.
if [[ -n $PKI_DOMAIN ]]; then
  if ! enabled secrets pki; then
    "$CLI" secrets enable pki
    "$CLI" secrets tune -max-lease-ttl=8760h pki
    "$CLI" write -field=certificate pki/root/generate/internal \
      common_name="$PKI_DOMAIN" key_type=ec key_bits=256 ttl=8760h >/dev/null
  fi
  "$CLI" write "pki/roles/$ROLE" \
    allowed_domains="$PKI_DOMAIN" allow_subdomains=true \
    key_type=ec key_bits=256 max_ttl=72h
fi

echo "configured: role $ROLE ($AUTH at auth/$AUTH_PATH) for $NAMESPACE/$SERVICE_ACCOUNT, audience $AUDIENCE, policy $POLICY"
