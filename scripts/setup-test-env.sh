#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Rust, git, Python and apt only):
# Debian packages for the local stand-ins, and Python tools into ./.venv. Idempotent and
# quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v lighttpd >/dev/null 2>&1 || missing+=(lighttpd)
# The mirror links libgit2 and OpenSSL built from source (git2's vendored features): their
# build scripts need a C compiler, make and perl with its core modules.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
perl -MIPC::Cmd -MFindBin -MFile::Compare -e1 >/dev/null 2>&1 || missing+=(perl)
# The git server stand-in serves HTTPS only, as CodeCommit does.
[ -e /usr/lib/lighttpd/mod_openssl.so ] || missing+=(lighttpd-mod-openssl)
# An aarch64 C cross compiler: tests try the Lambda package check on aarch64 binaries.
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/lib/libc.so ] || missing+=(libc6-dev-arm64-cross)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements-test.txt "$stamp"; then
  echo "setup: installing Python tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt "$stamp"
fi
