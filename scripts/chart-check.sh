#!/usr/bin/env bash
# Checks charts/courier without a cluster: helm lint, renders for several value sets, strict
# Kubernetes 1.30/1.37 schema validation, our CRD schemas, yamllint, values.schema.json, and
# the chart's promises (scripts/chart/check.py). Prints "N passed, M failed" last; exits
# non-zero on any failure.
#
# Installs what it needs into .venv (git-ignored) when missing:
#   helm-python-sdk  the real Helm v4 library (lint, render, schema), no helm binary needed
#   kubernetes-validate  Kubernetes JSON schemas, offline
#   yamllint
# Usage: scripts/chart-check.sh [-v]
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "jsonschema>=4.18"
  "PyYAML>=6"
)

if [[ ! -x .venv/bin/python ]]; then
  echo "chart-check: creating .venv" >&2
  python3 -m venv .venv
fi
if ! .venv/bin/python - "${REQUIREMENTS[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for req in sys.argv[1:]:
    if "==" in req:
        name, want = req.split("==")
        if version(name) != want:
            sys.exit(1)
    else:
        version(req.split(">=")[0])  # present is enough
PY
then
  echo "chart-check: installing ${REQUIREMENTS[*]}" >&2
  .venv/bin/pip install --disable-pip-version-check -q "${REQUIREMENTS[@]}"
fi

# No __pycache__ in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python scripts/chart/check.py "$@"
