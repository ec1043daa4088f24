#!/usr/bin/env bash
# The mirror benchmark (BENCHMARKS.md, "## Mirror"): tozai mirror against the git CLI
# baselines, served by the CodeCommit stand-in (lighttpd + tests/support/codecommit_cgi.py,
# which checks the SigV4 git password, then git http-backend), on loopback and over a link
# shaped like the path between two regions (200 Mbit/s with tbf, 10 ms round trip).
#
#   bash bench/mirror.sh            # everything; prints a table, saves it under bench/.work/
#
# Knobs (environment): LINKS="loopback shaped", RUNS_SLOW=3 (cases a, e), RUNS_FAST=7 (b, c,
# d), SEED=20240601, COMMITS=10000 FILES=5000 (smaller for a smoke test), KEEPALIVE_IDLE=5
# (the stand-in's keep-alive idle timeout, seconds), SKIP_BUILD=1 (use target/release/tozai as is),
# TLS=1 (HTTPS, as CodeCommit: a CA made for the run with the openssl CLI, trusted by tozai
# through SSL_CERT_FILE and by git through GIT_SSL_CAINFO; TLS=0 serves plain HTTP).
#
# The cases:
#   (a) tozai mirror into an empty standby, cold cache
#   (b) tozai mirror of one new commit, warm cache, standby one commit behind
#   (c) git clone --mirror SRC && git push --mirror DST, per change (what the seed's CodeBuild
#       job and the public samples do), standby one commit behind
#   (d) git fetch into a warm mirror clone + git push --mirror: the practical floor
#   (e) git clone --mirror SRC && git push --mirror DST into an empty standby
#
# Needs root for the shaped link (network namespace, veth, tbf). Uses 127.0.0.1 and the two
# addresses of a veth pair it creates; removes the namespace and kills what it started, by
# pid, on exit. The servers, the proxy and every measured command run under `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
WORK=$BENCH/.work
SEED=${SEED:-20240601}
COMMITS=${COMMITS:-10000}
FILES=${FILES:-5000}
RUNS_SLOW=${RUNS_SLOW:-3}
RUNS_FAST=${RUNS_FAST:-7}
LINKS=${LINKS:-loopback shaped}
RATE=200mbit
ONE_WAY_MS=5
TOZAI=$ROOT/target/release/tozai
SUBNET=10.231.197 # /30 on the veth pair: .1 host side, .2 inside the namespace

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- prerequisites ----
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
[ -x /usr/bin/time ] || need+=(time)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v tc >/dev/null 2>&1 || [ -x /usr/sbin/tc ] || need+=(iproute2)
TLS=${TLS:-1}
if [ "$TLS" = 1 ]; then
  [ -e /usr/lib/lighttpd/mod_openssl.so ] || need+=(lighttpd-mod-openssl)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
fi
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin
LIGHTTPD=$(command -v lighttpd)
GIT=$(command -v git)
[ -x "$("$GIT" --exec-path)/git-http-backend" ] || die "git-http-backend is missing"
# A real interpreter, not a pyenv shim: the CGI and the credential helper run per request.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(python3 -c 'import sys; print(sys.executable)'); fi
CGI=$ROOT/tests/support/codecommit_cgi.py
[ -f "$CGI" ] || die "$CGI is missing (the CodeCommit stand-in)"
case " $LINKS " in *" shaped "*) [ "$(id -u)" = 0 ] || die "the shaped link needs root (or LINKS=loopback)";; esac

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release -p tozai-cli"
  cargo build --release -q -p tozai-cli
fi
[ -x "$TOZAI" ] || die "$TOZAI is missing"

# ---- the test repository (generated once, reused) ----
mkdir -p "$WORK"
GEN=$WORK/src-$SEED-$COMMITS-$FILES.git
if [ ! -f "$GEN/bench-summary.json" ]; then
  log "generating the test repository (seed $SEED) into $GEN: about a minute"
  rm -rf "$GEN" "$GEN.tmp"
  timeout 3600 "$PY" "$BENCH/gen-repo.py" init "$GEN.tmp" --seed "$SEED" --commits "$COMMITS" --files "$FILES" > "$WORK/summary.tmp"
  mv "$WORK/summary.tmp" "$GEN.tmp/bench-summary.json"
  mv "$GEN.tmp" "$GEN"
fi
log "test repository: $(tr -d '\n' < "$GEN/bench-summary.json" | sed 's/ \+/ /g' | cut -c1-200)"

# ---- the run's directory, credentials, git configuration ----
RUN=$WORK/run
rm -rf "$RUN"
mkdir -p "$RUN/repos" "$RUN/tmp" "$RUN/home" "$RUN/server"
cp -a "$GEN" "$RUN/repos/src"
rm -f "$RUN/repos/src/bench-summary.json"

unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
export AWS_ACCESS_KEY_ID=AKIDTOZAIBENCH0001
export AWS_SECRET_ACCESS_KEY=tozai/bench/secret/0123456789abcdefghijklmn
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export HOME=$RUN/home XDG_CONFIG_HOME=$RUN/home/.config XDG_CACHE_HOME=$RUN/home/.cache
export GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LC_ALL=C
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_CONFIG GIT_CONFIG_GLOBAL
cat > "$HOME/.gitconfig" <<EOF
[user]
	name = Tozai Bench
	email = bench@tozai.invalid
[credential]
	helper = !$PY $BENCH/git-credential-codecommit.py
	useHttpPath = true
[init]
	defaultBranch = main
EOF
cat > "$RUN/server/standin.json" <<EOF
{"repos_root": "$RUN/repos", "git": "$GIT", "regions": ["us-east-1", "us-west-2"],
 "max_skew_seconds": 900,
 "credentials": [{"access_key_id": "$AWS_ACCESS_KEY_ID", "secret_access_key": "$AWS_SECRET_ACCESS_KEY", "session_token": null}]}
EOF

# ---- HTTPS: a CA for this run, a server certificate for both links' addresses ----
SCHEME=http
if [ "$TLS" = 1 ]; then
  SCHEME=https
  tls=$RUN/server/tls
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" -subj "/CN=tozai bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=tozai bench server" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s.2\nextendedKeyUsage=serverAuth\n' "$SUBNET" > "$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 1 -extfile "$tls/ext" -out "$tls/server.pem" 2>/dev/null
  # tozai (libgit2's OpenSSL, rustls), Python's urllib: SSL_CERT_FILE; git (curl): GIT_SSL_CAINFO.
  export SSL_CERT_FILE=$tls/ca.pem GIT_SSL_CAINFO=$tls/ca.pem
  unset SSL_CERT_DIR
fi

# ---- cleanup: only what this script started ----
PIDS=()
NS=""
VETH=""
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [ -n "$NS" ]; then ip netns del "$NS" 2>/dev/null || true; NS=""; fi
  if [ -n "$VETH" ]; then ip link del "$VETH" 2>/dev/null || true; VETH=""; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- the server: start_server LINK sets URL_PREFIX ----
lighttpd_conf() { # bind port
  local modules='"mod_alias", "mod_cgi", "mod_setenv", "mod_accesslog"'
  [ "$TLS" = 1 ] && modules='"mod_openssl", '$modules
  echo "server.modules = ($modules)"
  if [ "$TLS" = 1 ]; then
    cat <<EOF
server.feature-flags = ("server.h2proto" => "disable")
ssl.engine = "enable"
ssl.pemfile = "$RUN/server/tls/server.pem"
ssl.privkey = "$RUN/server/tls/server.key"
ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.2")
EOF
  fi
  cat <<EOF
server.bind = "$1"
server.port = $2
server.document-root = "$RUN/server/htdocs"
server.errorlog = "$RUN/server/error.log"
server.upload-dirs = ("$RUN/server/uploads")
server.tag = "tozai-bench"
# lighttpd closes idle keep-alive connections after 5 s by default. libgit2 opens the push's
# connection (GET info/refs), then builds the whole pack before it sends the POST on it: a
# first mirror of this repository takes longer than 5 s to build, the POST meets a closed
# socket (EPIPE) and tozai fails. 60 s is a common load-balancer idle timeout (ALB's
# default); what CodeCommit does is not documented. See BENCHMARKS.md, "## Mirror".
server.max-keep-alive-idle = ${KEEPALIVE_IDLE:-5}
accesslog.filename = "$RUN/server/access.log"
accesslog.format = "%>s %m %U%q in=%I out=%O %D us"
alias.url = ("/v1/repos" => "$CGI")
\$HTTP["url"] =^ "/v1/repos" {
    cgi.assign = ("" => "$PY")
}
setenv.add-environment = ("TOZAI_CODECOMMIT_STANDIN" => "$RUN/server/standin.json")
EOF
}

wait_http() { # url
  local i
  for i in $(seq 1 100); do
    if "$PY" - "$1" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
EOF
    sleep 0.1
  done
  die "no answer from $1; see $RUN/server/error.log"
}

start_server() {
  local link=$1 port
  mkdir -p "$RUN/server/htdocs" "$RUN/server/uploads"
  head -c 33554432 /dev/urandom > "$RUN/server/htdocs/32MiB.bin"
  echo ok > "$RUN/server/htdocs/ready.txt"
  case $link in
    loopback)
      port=$(free_port)
      lighttpd_conf 127.0.0.1 "$port" > "$RUN/server/lighttpd.conf"
      timeout 7200 "$LIGHTTPD" -D -f "$RUN/server/lighttpd.conf" >> "$RUN/server/out.log" 2>&1 &
      PIDS+=($!)
      URL_PREFIX=$SCHEME://127.0.0.1:$port
      ;;
    shaped)
      ip -4 route | grep -q "^$SUBNET\." && die "$SUBNET.0/30 is already routed here; change SUBNET"
      NS=tozai-bench-$$
      VETH=tzbh$$
      ip netns add "$NS"
      ip link add "$VETH" type veth peer name tzbn$$
      ip link set tzbn$$ netns "$NS"
      ip addr add "$SUBNET.1/30" dev "$VETH"
      ip link set "$VETH" up
      ip -n "$NS" addr add "$SUBNET.2/30" dev tzbn$$
      ip -n "$NS" link set tzbn$$ up
      ip -n "$NS" link set lo up
      # The rate, both directions: tbf on each end's egress (netem is not in this kernel).
      tc qdisc add dev "$VETH" root tbf rate $RATE burst 128kb latency 50ms
      ip netns exec "$NS" tc qdisc add dev tzbn$$ root tbf rate $RATE burst 128kb latency 50ms
      port=8080
      lighttpd_conf "$SUBNET.2" "$port" > "$RUN/server/lighttpd.conf"
      ip netns exec "$NS" timeout 7200 "$LIGHTTPD" -D -f "$RUN/server/lighttpd.conf" >> "$RUN/server/out.log" 2>&1 &
      PIDS+=($!)
      wait_http "$SCHEME://$SUBNET.2:$port/ready.txt"
      # The latency: 5 ms each way in a proxy on loopback, in front of the veth pair.
      rm -f "$RUN/server/proxy.port"
      timeout 7200 "$PY" "$BENCH/delay-proxy.py" 127.0.0.1:0 "$SUBNET.2:$port" "$ONE_WAY_MS" \
        --ready "$RUN/server/proxy.port" >> "$RUN/server/proxy.log" 2>&1 &
      PIDS+=($!)
      for _ in $(seq 1 100); do [ -f "$RUN/server/proxy.port" ] && break; sleep 0.05; done
      [ -f "$RUN/server/proxy.port" ] || die "the delay proxy did not start"
      URL_PREFIX=$SCHEME://127.0.0.1:$(cat "$RUN/server/proxy.port")
      ;;
    *) die "unknown link $link" ;;
  esac
  wait_http "$URL_PREFIX/ready.txt"
  link_check "$link"
}

stop_server() { cleanup; }

# Measures what the link gives: round trip of a small request and the download rate.
link_check() {
  "$PY" - "$URL_PREFIX" "$1" <<'EOF' | tee -a "$RUN/link.txt" >&2
import sys, time, urllib.request
prefix, link = sys.argv[1], sys.argv[2]
rtts = []
for _ in range(20):
    t = time.monotonic(); urllib.request.urlopen(prefix + "/ready.txt", timeout=5).read()
    rtts.append((time.monotonic() - t) * 1000)
t = time.monotonic(); n = len(urllib.request.urlopen(prefix + "/32MiB.bin", timeout=60).read())
rate = n * 8 / (time.monotonic() - t) / 1e6
print("link %s: small GET %.1f ms median (new connection each), 32 MiB download %.0f Mbit/s"
      % (link, sorted(rtts)[len(rtts) // 2], rate))
EOF
}

# ---- locations ----
# tozai reads CodeCommit locations and signs its git logins itself (TOZAI_CODECOMMIT_ENDPOINT
# points it at the stand-in); git gets the same login from bench/git-credential-codecommit.py.
tozai_loc() { echo "codecommit::$2://$1"; } # name region
git_url() { echo "$URL_PREFIX/v1/repos/$1"; }

check_tozai() {
  git init -q --bare "$RUN/repos/probe-src"
  git init -q --bare "$RUN/repos/probe-dst"
  local wt=$RUN/tmp/probe-wt
  git init -q "$wt" && git -C "$wt" commit -q --allow-empty -m probe
  git -C "$wt" push -q "$RUN/repos/probe-src" main
  rm -rf "$wt"
  timeout 60 "$TOZAI" mirror --from "$(tozai_loc probe-src us-east-1)" --to "$(tozai_loc probe-dst us-west-2)" \
    --cache "$RUN/tmp/probe-cache" > "$RUN/tmp/probe.out" 2>&1 \
    || { cat "$RUN/tmp/probe.out" >&2; die "tozai cannot mirror codecommit:: locations through the stand-in"; }
  rm -rf "$RUN/repos/probe-src" "$RUN/repos/probe-dst" "$RUN/tmp/probe-cache"
}

# ---- measuring ----
RESULTS=$WORK/results.tsv
: > "$RESULTS.tmp"
# measure LINK CASE RUN LIMIT_SECONDS cmd... : wall time (ms resolution), peak RSS (largest
# single process of the command's tree, GNU time %M), user and system CPU seconds. Marker
# requests before and after let the summary count the HTTP requests of each measurement in
# the server's access log.
mark() { "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' "$URL_PREFIX/ready.txt?mark=$1"; }
measure() {
  local link=$1 case=$2 run=$3 limit=$4; shift 4
  local t0 t1 out=$RUN/tmp/time.out
  sync
  mark "begin:$link:$case:$run"
  t0=$(date +%s%N)
  # Every case runs as `bash -c FUNCTION ARGS` so each pays the same shell start-up.
  if ! /usr/bin/time -f '%M %U %S' -o "$out" timeout "$limit" bash -c '"$@"' _ "$@" \
      > "$RUN/tmp/cmd.out" 2> "$RUN/tmp/cmd.err"; then
    cat "$RUN/tmp/cmd.out" "$RUN/tmp/cmd.err" >&2
    die "$case ($link, run $run) failed: $*"
  fi
  t1=$(date +%s%N)
  mark "end:$link:$case:$run"
  local rss user sys
  read -r rss user sys < <(tail -1 "$out")
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$link" "$case" "$run" "$wall" "$rss" "$user" "$sys" >> "$RESULTS.tmp"
  log "$link $case run $run: ${wall} s, peak RSS $((rss / 1024)) MiB, CPU ${user}+${sys} s"
}

# Logs whether (a) sent the cache's pack as it is (tozai's first-mirror fast path): the
# standby's only pack is then the cache's, same name (a pack is named by its checksum).
same_pack() { # standby cache_dir
  local got want
  got=$(cd "$RUN/repos/$1/objects/pack" && ls -- *.pack 2>/dev/null | tr '\n' ' ')
  want=$(cd "$2" && ls -- *.git/objects/pack/*.pack 2>/dev/null | sed 's|.*/||' | tr '\n' ' ')
  if [ -n "$got" ] && [ "$got" = "$want" ]; then
    log "$1: the standby holds the cache's pack as it is: $got"
  else
    log "$1: the standby's packs ($got) are not the cache's ($want): the usual push ran"
  fi
}

refs_of() { git --git-dir="$RUN/repos/$1" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags; }
verify() { # standby
  diff <(refs_of src) <(refs_of "$1") > /dev/null || { diff <(refs_of src) <(refs_of "$1") | head >&2; die "standby $1 differs from the source"; }
  git --git-dir="$RUN/repos/$1" cat-file -e "$(git --git-dir="$RUN/repos/src" rev-parse main)^{tree}" \
    || die "standby $1 lacks main's tree"
}

clone_push() { # src_url dst_url dir
  git clone -q --mirror "$1" "$3" && git -C "$3" push -q --mirror "$2"
}
fetch_push() { # src_url dst_url dir
  git -C "$3" fetch -q --prune "$1" '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*' \
    && git -C "$3" push -q --mirror "$2"
}
tozai_mirror() { # src dst cache
  "$TOZAI" mirror --from "$1" --to "$2" --cache "$3" --json
}
export TOZAI
export -f clone_push fetch_push tozai_mirror

K=0
new_commit() { K=$((K + 1)); "$PY" "$BENCH/gen-repo.py" commit "$RUN/repos/src" "$K" --seed "$SEED" > /dev/null; }

run_link() {
  local link=$1 i
  log "=== $link ==="
  start_server "$link"
  export TOZAI_CODECOMMIT_ENDPOINT=$URL_PREFIX
  check_tozai
  git ls-remote "$(git_url src)" > /dev/null || die "git cannot read the source through the stand-in"

  # (a) and (e): into an empty standby, alternating.
  for i in $(seq 1 "$RUNS_SLOW"); do
    rm -rf "$RUN/repos/e" "$RUN/tmp/e.git"
    git init -q --bare "$RUN/repos/e"
    sync
    measure "$link" e "$i" 1800 clone_push "$(git_url src)" "$(git_url e)" "$RUN/tmp/e.git"
    verify e
    rm -rf "$RUN/repos/a" "$RUN/tmp/cache-a"
    git init -q --bare "$RUN/repos/a"
    sync
    measure "$link" a "$i" 1800 tozai_mirror "$(tozai_loc src us-east-1)" "$(tozai_loc a us-west-2)" "$RUN/tmp/cache-a"
    verify a
    same_pack a "$RUN/tmp/cache-a"
  done
  # The warm caches: the last (a)'s tozai cache, the last (e)'s mirror clone.
  rm -rf "$RUN/tmp/cache-warm" "$RUN/tmp/git-warm.git"
  mv "$RUN/tmp/cache-a" "$RUN/tmp/cache-warm"
  mv "$RUN/tmp/e.git" "$RUN/tmp/git-warm.git"
  rm -rf "$RUN/repos/a" "$RUN/repos/e"

  # (b), (c), (d): the standbys start in step with the source; each round adds one commit.
  local s
  for s in b c d; do
    [ -d "$RUN/repos/$s" ] || cp -a "$RUN/repos/src" "$RUN/repos/$s"
  done
  for i in $(seq 0 "$RUNS_FAST"); do # round 0 warms up and is not kept
    new_commit
    measure "$link" b "$i" 600 tozai_mirror "$(tozai_loc src us-east-1)" "$(tozai_loc b us-west-2)" "$RUN/tmp/cache-warm"
    verify b
    measure "$link" d "$i" 600 fetch_push "$(git_url src)" "$(git_url d)" "$RUN/tmp/git-warm.git"
    verify d
    rm -rf "$RUN/tmp/c.git"
    measure "$link" c "$i" 1200 clone_push "$(git_url src)" "$(git_url c)" "$RUN/tmp/c.git"
    verify c
    rm -rf "$RUN/tmp/c.git"
  done
  rm -rf "$RUN/tmp/cache-warm" "$RUN/tmp/git-warm.git"
  stop_server
}

for link in $LINKS; do run_link "$link"; done
grep -v -P '\t[bcd]\t0\t' "$RESULTS.tmp" > "$RESULTS"
rm -f "$RESULTS.tmp"

# ---- the table ----
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
sleep 5 # lighttpd has flushed its access log by now (the servers are stopped anyway)
"$PY" - "$RESULTS" "$GEN/bench-summary.json" "$RUN/link.txt" "$RUN/server/access.log" "$TLS" <<'EOF' | tee "$WORK/mirror-$STAMP.md"
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
summary = json.load(open(sys.argv[2]))
links = []
data = {}
counts, current = {}, None
for line in open(sys.argv[4]):
    if "mark=begin:" in line:
        current = line.split("mark=begin:", 1)[1].split()[0]
        counts[current] = 0
    elif "mark=end:" in line:
        current = None
    elif current:
        counts[current] += 1
for link, case, run, wall, rss, user, sys_ in rows:
    requests = counts.get("%s:%s:%s" % (link, case, run), -1)
    if link not in links:
        links.append(link)
    data.setdefault((link, case), []).append(
        (float(wall), int(rss) / 1024, float(user) + float(sys_), int(requests)))
names = {
    "a": "(a) tozai mirror, empty standby, cold cache",
    "b": "(b) tozai mirror, one new commit, warm cache",
    "c": "(c) git clone --mirror + push --mirror, per change",
    "d": "(d) git fetch + push --mirror, warm clone (floor)",
    "e": "(e) git clone --mirror + push --mirror, empty standby",
}
print("Served over %s." % ("HTTPS (TLS 1.2+, ECDSA P-256)" if sys.argv[5] == "1" else "plain HTTP"))
print("Repository: %d commits, %d files, %d objects, pack %.1f MB (%.1f MiB)"
      % (summary["commits"], summary["files"], summary["objects"], summary["pack_bytes"] / 1e6,
         summary["pack_bytes"] / 2**20))
for line in open(sys.argv[3]):
    print(line.strip())
print()
print("| case | link | runs | median s | min s | peak RSS MiB (max) | CPU s (median) | HTTP requests |")
print("|---|---|---|---|---|---|---|---|")
med = {}
rss = {}
for link in links:
    for case in "abcde":
        v = data.get((link, case))
        if not v:
            continue
        walls = [w for w, _, _, _ in v]
        med[link, case] = statistics.median(walls)
        rss[link, case] = max(r for _, r, _, _ in v)
        print("| %s | %s | %d | %.3f | %.3f | %.0f | %.2f | %d |" % (
            names[case], link, len(v), med[link, case], min(walls), rss[link, case],
            statistics.median(c for _, _, c, _ in v), statistics.median(q for _, _, _, q in v)))
print()
def verdict(ok):
    return "met" if ok else "NOT met"
for link in links:
    m = lambda c: med.get((link, c))
    if m("b") and m("d"):
        print("- %s: (b)/(d) = %.2f (target <= 1.25: %s)" % (link, m("b") / m("d"), verdict(m("b") / m("d") <= 1.25)))
    if m("a") and m("e"):
        print("- %s: (a)/(e) = %.2f (target <= 1.25: %s)" % (link, m("a") / m("e"), verdict(m("a") / m("e") <= 1.25)))
    if m("c") and m("b"):
        print("- %s: (c)/(b) = %.1f" % (link, m("c") / m("b")))
    if (link, "b") in rss:
        print("- %s: peak RSS (b) %.0f MiB (target < 150 MB: %s)" % (link, rss[link, "b"], verdict(rss[link, "b"] * 2**20 < 150e6)))
    if (link, "a") in rss:
        print("- %s: peak RSS (a) %.0f MiB (target < 300 MB: %s)" % (link, rss[link, "a"], verdict(rss[link, "a"] * 2**20 < 300e6)))
EOF
log "raw results: $RESULTS; table: $WORK/mirror-$STAMP.md"
