#!/usr/bin/env bash
# Try tozai locally, no AWS account needed: check the example rules, then `tozai demo`: two
# local regions and the Lambdas' own code on a walk through pushes, checked step by step.
# Arguments go to `tozai demo`: --dir DIR keeps its repositories, --json prints the records.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p tozai-cli
tozai=$PWD/target/debug/tozai

echo "== tozai check -c examples/tozai.toml"
"$tozai" check -c examples/tozai.toml
echo
echo "== tozai demo $*"
exec "$tozai" demo "$@"
