#!/usr/bin/env bash
# Runs the whole Courier test suite: unit tests and black-box tests against real
# OpenBao servers. Installs what the tests need into .venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/venv.sh
export COURIER_VENV="$PWD/.venv"
export PATH="$PWD/.venv/bin:$PATH"

# The Helm chart, validated offline (lint, render, schemas, promises).
scripts/chart-check.sh

# Alerts and dashboard: promtool checks and rule unit tests (installs promtool when missing).
scripts/prometheus/check.sh

# The black-box tests drive the built provider and shim binaries.
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
