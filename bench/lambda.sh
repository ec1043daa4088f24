#!/usr/bin/env bash
# The Lambda benchmark (BENCHMARKS.md, "## Lambdas"): the release sync-judge and
# pipeline-judge as Lambda processes against a local Lambda Runtime API, with the
# CodeCommit API stand-in (tests/support/codecommit_api.py) and moto. Measures each judge's
# cold start (spawn -> first `next`, spawn -> first response), its peak RSS (VmHWM) and its
# own CPU time for a push that changed 10,000 paths (100 GetDifferences pages).
#
#   bash bench/lambda.sh            # about 7 minutes on 2 cores after the build; prints a table
#
# Needs Rust, git, Python and what scripts/setup-test-env.sh installs (moto and awscli in
# ./.venv). Everything listens on 127.0.0.1, runs under a watchdog and is killed, by pid,
# when the bench ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
export TOZAI_TEST_VENV=${TOZAI_TEST_VENV:-$PWD/.venv}
echo "bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
# The bench starts the release binaries next to it (target/release), so build them first.
cargo build --release -p tozai-sync-judge -p tozai-pipeline-judge
cargo bench -p tozai-tests --bench lambda
