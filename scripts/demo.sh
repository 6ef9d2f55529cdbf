#!/usr/bin/env bash
# Local end-to-end demo: starts an OpenBao dev server, seeds a secret, runs the
# provider, performs a Mount exactly as the Secrets Store CSI driver does, and
# prints the files it returns.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/venv.sh
export COURIER_VENV="$PWD/.venv"
export PATH="$PWD/.venv/bin:$PATH"

cargo build --workspace --bins
exec target/debug/courier-demo "$@"
