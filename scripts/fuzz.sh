#!/usr/bin/env bash
# Fuzzes tozai's parsers with cargo-fuzz (libFuzzer) for a fixed time per target.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); targets default to all of fuzz/fuzz_targets: event
# (EventBridge events), config (tozai.toml, its rule tests and plans), names (locations,
# ref names, commit ids, globs). Installs cargo-fuzz when missing. Seeds are in
# fuzz/corpus/<target>/seed-*; what the fuzzer adds there, fuzz/artifacts and the build in
# fuzz/target are not tracked. Exits 1 if any target crashed or broke an invariant,
# printing the input's path; reproduce with `cargo fuzz run <target> <path>`.
#
# Environment: FUZZ_SANITIZER (default address, cargo-fuzz's default; `none` builds on
# stable Rust without RUSTC_BOOTSTRAP), FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${1:-60}"
[ $# -gt 0 ] && shift
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(event config names)
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir="fuzz/target"
logs="$target_dir/fuzz-logs"
mkdir -p "$logs"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    start=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "== cargo-fuzz installed in $(($(date +%s) - start)) s"
fi
echo "== $(cargo fuzz --version), $(rustc --version)"

# cargo-fuzz passes -Zsanitizer=... (unless FUZZ_SANITIZER=none), a nightly-only flag.
# Try this toolchain without help first; if it refuses the flag (a stable rustc), use
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept it. Cargo caches rustc's answers
# without regard to RUSTC_BOOTSTRAP, so a refusal once cached would stick: no cache.
export CARGO_CACHE_RUSTC_INFO=0
if [ "$sanitizer" != none ] &&
    ! rustc -Zsanitizer="$sanitizer" --crate-type lib --print=cfg - </dev/null >/dev/null 2>&1; then
    if RUSTC_BOOTSTRAP=1 rustc -Zsanitizer="$sanitizer" --crate-type lib --print=cfg - \
        </dev/null >/dev/null 2>&1; then
        echo "== rustc refuses -Zsanitizer=$sanitizer (not nightly): using RUSTC_BOOTSTRAP=1"
        export RUSTC_BOOTSTRAP=1
    else
        echo "rustc cannot build with -Zsanitizer=$sanitizer; try FUZZ_SANITIZER=none" >&2
        exit 1
    fi
fi
echo "== building ${targets[*]} (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
    if ! cargo fuzz build --target-dir "$target_dir" -s "$sanitizer" "$t" 2>"$logs/build.log"; then
        tail -40 "$logs/build.log" >&2
        exit 1
    fi
done

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=()
summary="$logs/summary.md"
{
    echo "| target | seconds | executions | exec/s | corpus | crashes |"
    echo "|---|---:|---:|---:|---:|---:|"
} >"$summary"
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="$logs/$t.log"
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
    echo "== fuzzing $t for $seconds s (log: $log)"
    start=$(date +%s)
    status=0
    # shellcheck disable=SC2086
    cargo fuzz run --target-dir "$target_dir" -s "$sanitizer" "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1 "${dict[@]}" \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    size=$(find "$corpus" -type f | wc -l)
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=1
        failed+=("$t")
        echo "!! $t failed (exit $status):" >&2
        grep -E "panicked at|ERROR: |SUMMARY: " "$log" | head -5 >&2 || true
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "!! input: ${artifact:-(none written; see $log)}" >&2
        echo "!! reproduce: cargo fuzz run -s $sanitizer $t ${artifact:-}" >&2
        echo "!! minimize:  cargo fuzz tmin -s $sanitizer $t ${artifact:-}" >&2
    fi
    echo "   $t: ${elapsed} s, ${execs:-?} executions, ${rate:-?} exec/s, corpus $size, crashes $crashes"
    echo "| \`$t\` | $elapsed | ${execs:-?} | ${rate:-?} | $size | $crashes |" >>"$summary"
done

echo "== summary (also in $summary)"
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "== no crash, no broken invariant"
