#!/usr/bin/env bash
# Runs the whole Courier test suite: unit tests and black-box tests against real
# OpenBao, moto and PostgreSQL servers, with cargo-nextest (each test in its own
# process, a slow-test report at the end; profiles in .config/nextest.toml).
# Installs what the tests need first: the Python venv, and cargo-nextest when
# missing. Extra arguments go to nextest, e.g. `scripts/test.sh -E 'binary(vault)'`.
# NEXTEST_PROFILE=ci selects the CI profile (JUnit report, stuck tests killed).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/venv.sh
export COURIER_VENV="$PWD/.venv"
export PATH="$PWD/.venv/bin:$PATH"

# A fresh machine has only cargo: build nextest from crates.io once (several minutes).
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

# The Helm chart, validated offline (lint, render, schemas, promises).
scripts/chart-check.sh

# Alerts and dashboard: promtool checks and rule unit tests (installs promtool when missing).
scripts/prometheus/check.sh

# The black-box tests drive the built provider and shim binaries.
cargo build --workspace --bins
cargo nextest run --workspace --all-targets "$@"
# nextest does not run doctests: run them when a doc comment opens a Rust code block.
has_doctests() {
    find proto/src provider/src driver-shim/src tests/src -name '*.rs' -print0 |
        xargs -0 awk '
            FNR == 1 { open = 0 }
            /^[[:space:]]*\/\/[\/!][[:space:]]*```/ {
                if (!open) {
                    open = 1
                    lang = $0
                    sub(/.*```/, "", lang)
                    if (lang == "" || lang ~ /^(rust|no_run|should_panic|compile_fail|edition)/) found = 1
                } else {
                    open = 0
                }
            }
            END { exit !found }'
}
if has_doctests; then
    cargo test --workspace --doc
fi
