#!/usr/bin/env bash
# Supply-chain checks of the workspace's dependency graph with cargo-deny, by the policy in
# deny.toml: licences, bans (duplicate versions and wildcards are warnings, unwanted crates
# errors), sources (crates.io only) and security advisories. Installs the pinned cargo-deny
# (cargo install --locked) when it is missing. CI runs it (.ci/run).
#
#   bash scripts/deny.sh
#   TOZAI_ADVISORY_DB=DIR bash scripts/deny.sh
#
# Licences, bans and sources need only Cargo.lock and the crates' manifests: always checked,
# and any error exits 1.
#
# Advisories need the RustSec advisory database, a git repository cargo-deny fetches from
# GitHub. Where GitHub cannot be reached (this project's CI and development machines reach
# only the package registries), they cannot be checked, and the script says so in a line
# starting `deny: advisories NOT checked` and carries on (exit 0): nothing is pretended.
#   - With GitHub reachable, cargo-deny fetches the database and checks; an advisory that
#     concerns a dependency exits 1.
#   - TOZAI_ADVISORY_DB=DIR checks against a local clone of the database instead (for
#     example one copied from a machine that can reach GitHub), printing how old it is; an
#     advisory exits 1. Only advisories published before its last commit are known.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $version" ]; then
  echo "deny: installing cargo-deny $version (cargo install --locked, once: about 7 CPU-minutes, 5 to 15 minutes on 2 cores)"
  start=$SECONDS
  cargo install --locked --quiet cargo-deny --version "$version"
  echo "deny: cargo-deny installed in $((SECONDS - start)) s"
fi

# Without the inclusion graphs (thousands of lines for the duplicate-version warnings); for
# the graph of one finding, run `cargo deny check bans` (or licenses, sources).
cargo deny --locked check --hide-inclusion-graph licenses bans sources
echo "deny: licenses, bans, sources checked"

if [ -n "${TOZAI_ADVISORY_DB:-}" ]; then
  db=$(cd "$TOZAI_ADVISORY_DB" && pwd)
  git -C "$db" rev-parse --verify -q HEAD >/dev/null \
    || { echo "deny: TOZAI_ADVISORY_DB=$TOZAI_ADVISORY_DB is not a git clone of the RustSec advisory database" >&2; exit 2; }
  as_of=$(git -C "$db" log -1 --format=%cs HEAD)
  age=$(( ($(date +%s) - $(git -C "$db" log -1 --format=%ct HEAD)) / 86400 ))
  # The same policy, reading the database from a copy of the clone where cargo-deny keeps
  # the default database (<db-path>/advisory-db-<hash of its URL>), without fetching.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  git clone -q "$db" "$work/dbs/advisory-db-3157b0e258782691"
  sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$work/dbs\"|" deny.toml > "$work/deny.toml"
  cargo deny --locked --offline --config "$work/deny.toml" check advisories
  echo "deny: advisories checked against the local RustSec database as of $as_of ($age days old)"
  [ "$age" -le 90 ] || echo "deny: warning: that database is older than 90 days: advisories published since are not known"
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
cargo deny --locked check advisories 2>"$log" || rc=$?
cat "$log" >&2
if [ "$rc" = 0 ]; then
  echo "deny: advisories checked against the RustSec database, fetched now"
elif grep -q "failed to fetch advisory database" "$log"; then
  echo "deny: advisories NOT checked: the RustSec advisory database (a git repository on GitHub) cannot be fetched from this machine; run this script where GitHub is reachable, or with TOZAI_ADVISORY_DB=DIR pointing at a local clone of it"
else
  exit 1
fi
