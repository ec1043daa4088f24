#!/usr/bin/env bash
# Try tozai locally, no AWS account needed: check the example rules, then plan three pushes
# to a throwaway repository laid out like the talk's (common/, primary/, secondary/).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p tozai-cli
tozai=$PWD/target/debug/tozai
config=$PWD/examples/tozai.toml

echo "== tozai check -c examples/tozai.toml"
"$tozai" check -c "$config"

repo=$(mktemp -d "${TMPDIR:-/tmp}/tozai-try.XXXXXX")
trap 'rm -rf "$repo"' EXIT
git() { command git -C "$repo" -c user.name=try -c user.email=try@tozai.invalid "$@"; }
git init -q -b main
mkdir -p "$repo"/{common,primary,secondary}/templates
for d in common primary secondary; do echo "Resources: {}" > "$repo/$d/templates/root.yaml"; done
git add -A && git commit -qm "initial layout"

step() {
  local file=$1 message=$2
  echo "Description: $message" >> "$repo/$file"
  git commit -qam "$message"
  echo
  echo "== push: $message ($file)"
  "$tozai" plan -c "$config" --repo "$repo" HEAD
}
step common/templates/root.yaml "a common change"
step primary/templates/root.yaml "a Tokyo-only change"
step secondary/templates/root.yaml "an Osaka-only change"
