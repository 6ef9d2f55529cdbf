#!/usr/bin/env bash
# Benchmarks the release build of courier-provider against a real OpenBao dev server and prints a markdown table
# of figures, same-run baselines, ratios and goals. Installs what it needs into .venv first, like scripts/test.sh.
# `scripts/bench.sh p6` measures only P6 (memory under the hostile corpus).
# `scripts/bench.sh p1` measures only P1 (both settings), `scripts/bench.sh p3` only the idle footprint.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/venv.sh
export COURIER_VENV="$PWD/.venv"
export PATH="$PWD/.venv/bin:$PATH"

cargo build --release -p courier-provider -p courier-tests --bins
COURIER_PROVIDER_BIN="$PWD/target/release/courier-provider" exec target/release/courier-bench "$@"
