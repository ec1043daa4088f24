#!/usr/bin/env bash
# The deterministic simulation of issue 11 (sim/): seeded pushes, deliveries, interleavings
# and faults over the real judges and mirror, checking tozai's guarantees.
#
#   bash scripts/simulate.sh [--release] [--seeds N] [--from SEED] [--steps K] [--traces | --find]
#   bash scripts/simulate.sh [--release] --seed S [--steps K]   # one seed, its whole trace
#   bash scripts/simulate.sh --mutate NAME [...]   # stand-ins broken on purpose: must fail
#
# Exits 1 on a violation, printing the seed, the guarantee broken and the trace; the last
# line is always "N runs, V violations".
#
# A debug build by default: it reuses CI's debug build of the workspace (about 15 s for the
# sim and tozai without features) and runs about 50 seeds a second, so CI's few hundred
# seeds take seconds. --release is for soaks: its first build takes minutes (fat LTO, as the
# Lambdas ship), then it runs about 400 seeds a second per core.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [[ "${1:-}" == "--release" ]]; then
    profile=(--release)
    shift
fi
exec cargo run --quiet "${profile[@]}" -p tozai-sim -- "$@"
