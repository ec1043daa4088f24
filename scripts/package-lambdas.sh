#!/usr/bin/env bash
# Builds the three Lambda packages (provided.al2023, handler `bootstrap`), each with the
# config bundled next to the binary (the functions read $LAMBDA_TASK_ROOT/tozai.toml):
#
#   target/lambda/<function>/bootstrap     the release binary
#   target/lambda/<function>/tozai.toml    a copy of the config
#   target/lambda/<function>.zip           both, what infra/common/*.yaml's CodeUri points at
#   target/lambda/ARCH                     the architecture built (scripts/deploy.sh reads it)
#
# for <function> in sync-judge, mirror, pipeline-judge.
#
#   bash scripts/package-lambdas.sh [-c tozai.toml] [--arch x86_64|arm64]
#
# -c      the config to bundle (default: ./tozai.toml, else examples/tozai.toml with a note)
# --arch  x86_64 (the default): plain `cargo build --release` for the host target
#           (x86_64-unknown-linux-gnu), no extra tools.
#         arm64 (Graviton, the templates' default): with cargo-lambda when it is installed
#           (`cargo install cargo-lambda`; it cross-links with zig for the Lambda glibc):
#             cargo lambda build --release --arm64 -p tozai-sync-judge -p tozai-pipeline-judge
#             cargo lambda build --release --arm64 -p tozai-mirror
#           otherwise with the aarch64 target and a cross linker:
#             rustup target add aarch64-unknown-linux-gnu
#             apt-get install gcc-aarch64-linux-gnu
#             CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
#             CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
#               cargo build --release --target aarch64-unknown-linux-gnu -p ...
#
# Whatever the architecture, each binary is checked before it is packaged (readelf, from
# binutils, reads either architecture's ELF): it must be built for --arch, need no glibc
# newer than provided.al2023's 2.34 (nor GLIBC_ABI_DT_RELR, which came with glibc 2.36),
# and no shared library beyond glibc's and libgcc's (zlib is linked statically:
# LIBZ_SYS_STATIC=1). A binary that fails is not packaged and the script exits 1.
#
# The judges are built apart from the mirror so that they do not link libgit2 (cargo would
# otherwise unify the `git` feature of the shared crate into all three).
set -euo pipefail
cd "$(dirname "$0")/.."

config=""
arch="x86_64"
while [ $# -gt 0 ]; do
  case "$1" in
    -c|--config) config="${2:?-c needs a file}"; shift 2 ;;
    --arch) arch="${2:?--arch needs x86_64 or arm64}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "package-lambdas: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$config" ]; then
  if [ -f tozai.toml ]; then
    config=tozai.toml
  else
    config=examples/tozai.toml
    echo "package-lambdas: no ./tozai.toml: bundling $config (pass -c YOUR.toml to deploy yours)"
  fi
fi
[ -f "$config" ] || { echo "package-lambdas: $config does not exist" >&2; exit 2; }
case "$arch" in x86_64|arm64) ;; *) echo "package-lambdas: --arch is x86_64 or arm64, not $arch" >&2; exit 2 ;; esac

functions=(sync-judge pipeline-judge mirror)
# zlib (libgit2's, in the mirror) statically: provided.al2023 promises glibc, not libz.
export LIBZ_SYS_STATIC=1

# Builds; sets bin_dir to where the binaries are (named tozai-<function>).
build() {
  local judges=(-p tozai-sync-judge -p tozai-pipeline-judge) mirror=(-p tozai-mirror)
  if [ "$arch" = x86_64 ]; then
    [ "$(uname -m)" = x86_64 ] || { echo "package-lambdas: --arch x86_64 builds on an x86_64 host only; use cargo lambda build --x86-64" >&2; exit 2; }
    cargo build --release --locked "${judges[@]}"
    cargo build --release --locked "${mirror[@]}"
    bin_dir=target/release
  elif cargo lambda --version >/dev/null 2>&1; then
    cargo lambda build --release --locked --arm64 "${judges[@]}"
    cargo lambda build --release --locked --arm64 "${mirror[@]}"
    bin_dir=cargo-lambda
  elif rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
      && command -v aarch64-linux-gnu-gcc >/dev/null; then
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    cargo build --release --locked --target aarch64-unknown-linux-gnu "${judges[@]}"
    cargo build --release --locked --target aarch64-unknown-linux-gnu "${mirror[@]}"
    bin_dir=target/aarch64-unknown-linux-gnu/release
  else
    cat >&2 <<'EOF'
package-lambdas: cannot build for arm64 here. Either
  cargo install cargo-lambda          (then rerun; it cross-links with zig)
or
  rustup target add aarch64-unknown-linux-gnu && apt-get install gcc-aarch64-linux-gnu
or build for x86_64 (--arch x86_64) and deploy with Architecture=x86_64 (scripts/deploy.sh
does that by itself from target/lambda/ARCH).
EOF
    exit 2
  fi
}

binary() { # the built binary of function $1
  if [ "$bin_dir" = cargo-lambda ]; then echo "target/lambda/tozai-$1/bootstrap"; else echo "$bin_dir/tozai-$1"; fi
}

# Refuses a binary provided.al2023 could not start: one built for another architecture, a
# glibc symbol version newer than its 2.34, or a shared library other than glibc's and
# libgcc's.
check_binary() {
  local bin="$1" machine needed versions newest
  command -v readelf >/dev/null || { echo "package-lambdas: readelf (binutils) is needed to check $bin" >&2; exit 2; }
  machine=$(LC_ALL=C readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
  case "$arch:$machine" in
    x86_64:*X86-64*|arm64:AArch64) ;;
    *) echo "package-lambdas: $bin is built for ${machine:-an unknown machine}, not $arch" >&2; exit 1 ;;
  esac
  needed=$(LC_ALL=C readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
  for lib in $needed; do
    case "$lib" in
      libc.so.6|libm.so.6|libgcc_s.so.1|libpthread.so.0|libdl.so.2|librt.so.1|libutil.so.1|ld-linux-*.so.*) ;;
      *) echo "package-lambdas: $bin needs $lib, which provided.al2023 does not promise" >&2; exit 1 ;;
    esac
  done
  versions=$(LC_ALL=C readelf -V "$bin" | grep -o 'GLIBC_[0-9A-Z_.]*' | sort -u || true)
  if printf '%s\n' "$versions" | grep -q '^GLIBC_ABI_DT_RELR$'; then
    echo "package-lambdas: $bin needs GLIBC_ABI_DT_RELR (glibc 2.36, linked with -z pack-relative-relocs); provided.al2023 has glibc 2.34" >&2
    exit 1
  fi
  newest=$(printf '%s\n' "$versions" | sed -n 's/^GLIBC_\([0-9][0-9.]*\)$/\1/p' | sort -V | tail -n 1)
  if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" 2.34 | sort -V | tail -n 1)" != 2.34 ]; then
    echo "package-lambdas: $bin needs glibc $newest; provided.al2023 has 2.34. Build with cargo-lambda (zig) or on an older distribution." >&2
    exit 1
  fi
}

build
# Every binary is checked before any is packaged: a refused build leaves no new package.
for fn in "${functions[@]}"; do
  src=$(binary "$fn")
  [ -x "$src" ] || { echo "package-lambdas: $src was not built" >&2; exit 1; }
  check_binary "$src"
done
mkdir -p target/lambda
for fn in "${functions[@]}"; do
  src=$(binary "$fn")
  dir="target/lambda/$fn"
  rm -rf "$dir" "$dir.zip"
  mkdir -p "$dir"
  cp "$src" "$dir/bootstrap"
  chmod 0755 "$dir/bootstrap"
  cp "$config" "$dir/tozai.toml"
  # A reproducible zip (fixed dates, bootstrap executable), with the Python every
  # machine with awscli has, so `zip` need not be installed.
  python3 - "$dir" "$dir.zip" <<'EOF'
import sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for name, mode in (("bootstrap", 0o755), ("tozai.toml", 0o644)):
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(f"{src}/{name}", "rb") as f:
            z.writestr(info, f.read())
EOF
  echo "package-lambdas: $dir.zip ($(du -h "$dir.zip" | cut -f1), $arch, config $config)"
done
echo "$arch" > target/lambda/ARCH
