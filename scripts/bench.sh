#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md: judging 100,000 paths against 50 rules (next to a bare
# globset), and `tozai plan` on a commit of 100,000 files (next to git diff). Needs only
# Rust and git; each bench checks its answers and panics on a mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
# The plan bench times the release binary, so build it first.
cargo build --release -p tozai-cli
cargo bench -p tozai-tests --bench judge --bench plan
