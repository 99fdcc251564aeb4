#!/usr/bin/env bash
# Shrinks the built filter in place with binaryen's wasm-opt -Oz (issue 13: the .wasm Envoy
# and Istio pull must stay under 300 KiB; cargo's own output is well over it).
#   scripts/optimize-wasm.sh FILE
# cargo hard-links its output to FILE again on every build, fresh or not (with the old mtime),
# so the optimized result is cached beside FILE (FILE.opt, and FILE.opt.src: the checksum of
# the input it came from) and wasm-opt runs again only when cargo built something new.
# Without wasm-opt: a warning and the unoptimized file, except on CI (CI set), where
# install-deps.sh has installed binaryen and a missing optimizer is an error.
set -euo pipefail

wasm=${1:?usage: $0 FILE}
cache="$wasm.opt"
source_sum="$wasm.opt.src"
say() { echo "optimize-wasm: $*" >&2; }
size() { wc -c <"$1" | tr -d ' '; }
sum() { cksum <"$1" | cut -d' ' -f1,2; }
# Replaces FILE with a new file: writing through it would also rewrite cargo's copy in deps/.
install_as_wasm() { cp -f "$1" "$wasm.tmp" && mv -f "$wasm.tmp" "$wasm"; }

[ -f "$wasm" ] || { say "error: $wasm not found (build it first)"; exit 1; }
current=$(sum "$wasm")
if [ -f "$cache" ] && [ -f "$source_sum" ]; then
    [ "$current" = "$(sum "$cache")" ] && exit 0
    if [ "$current" = "$(cat "$source_sum")" ]; then
        install_as_wasm "$cache"
        exit 0
    fi
fi
if ! command -v wasm-opt >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then
        say "error: wasm-opt (Debian package binaryen) not found; scripts/install-deps.sh installs it"
        exit 1
    fi
    say "warning: wasm-opt (Debian package binaryen) not found: $wasm stays unoptimized ($(size "$wasm") bytes)."
    say "warning: install binaryen (apt-get install binaryen, or run scripts/install-deps.sh as root) for the shipped size."
    exit 0
fi
before=$(size "$wasm")
# The features rustc's wasm32-wasip1 output uses; wasm-opt refuses instructions outside them.
wasm-opt -Oz \
    --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals \
    "$wasm" -o "$cache.tmp"
mv -f "$cache.tmp" "$cache"
echo "$current" >"$source_sum"
install_as_wasm "$cache"
say "$wasm: $before -> $(size "$wasm") bytes (wasm-opt -Oz)"
