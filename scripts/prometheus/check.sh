#!/usr/bin/env bash
# Checks Courier's alerts and dashboard with the real Prometheus tooling: `promtool check rules`
# on charts/courier/files/prometheus-rules.yaml, its unit tests (rules-test.yaml, series shaped
# like Courier's metrics), and every dashboard query parsed by promtool as a recording rule.
# Installs promtool from the distribution (package `prometheus`) when missing; fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null; then
  echo "prometheus: installing promtool (apt package prometheus)" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -1

RULES=charts/courier/files/prometheus-rules.yaml
DASHBOARD=charts/courier/files/dashboards/courier.json
promtool check rules "$RULES"
(cd scripts/prometheus && promtool test rules rules-test.yaml)

# Dashboard queries: Grafana's $__rate_interval becomes 5m; each query must parse.
queries=$(mktemp --suffix=.yaml)
trap 'rm -f "$queries"' EXIT
python3 - "$DASHBOARD" >"$queries" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
if not exprs:
    sys.exit("the dashboard has no queries")
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e.replace('$__rate_interval', '5m'))}")
PY
promtool check rules "$queries"
echo "prometheus: rules, rule tests and dashboard queries OK"
