#!/usr/bin/env bash
# Local end-to-end latency: from a push to the primary (its CodeCommit-shaped event handed
# over) to the standby's pipeline start, through the sync-judge, the mirror (git2, local
# repositories) and the standby's pipeline-judge: `tozai demo`'s steps 1 (common/) and
# 3 (secondary/), release build, RUNS times (default 20). The demo dispatches events one
# at a time, so the primary's own pipeline-judge runs inside the measured span too.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-20}"
cargo build -q --release -p tozai-cli
bin=target/release/tozai
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$runs"); do
  "$bin" demo >"$out/run-$i.txt" 2>/dev/null
done
python3 - "$out" "$runs" <<'PY'
import re, statistics, sys, pathlib
out, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
line = re.compile(r"^\s+\+\s*(\d+) ms\s+(\S+)\s+(.*)$")
lat = {1: [], 3: []}
for f in sorted(out.glob("run-*.txt")):
    step = None
    push = None
    for text in f.read_text().splitlines():
        m = re.match(r"^(\d+)\. ", text)
        if m:
            step, push = int(m.group(1)), None
            continue
        m = line.match(text)
        if not m or step not in lat:
            continue
        ms, region, what = int(m.group(1)), m.group(2), m.group(3)
        if region == "tokyo" and what.startswith("push:") and push is None:
            push = ms
        if region == "osaka" and "osaka-core STARTED" in what and push is not None:
            lat[step].append(ms - push)
            push = None
for step, values in lat.items():
    assert len(values) == runs, f"step {step}: {len(values)} of {runs} runs measured"
    values.sort()
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    print(f"step {step}: push -> standby pipeline start: median {statistics.median(values):.0f} ms, "
          f"p90 {p90} ms, min {values[0]} ms, max {values[-1]} ms over {len(values)} runs")
PY
