#!/usr/bin/env bash
# The whole test suite: sets up what it needs, builds once, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
export TOZAI_TEST_VENV="$PWD/.venv"
# The CLI tests run the real binary: build it (and everything else) once, first.
cargo build --workspace --bins
cargo test --workspace
bash scripts/simulate.sh --seeds 300
