#!/bin/sh
# Entrypoint of the compose path's Envoy (docker-compose.yaml), also run natively by
# tests/compose.rs with RENDER_ONLY=1 to prove it renders exactly what the native path does.
#
# 1. Renders envoy/bootstrap.yaml the way tests/support's render_bootstrap does for `make run`
#    and the tests: every {{NAME}} becomes the value of the environment variable NAME, and a
#    placeholder without a value is an error. Nothing else is changed.
# 2. Writes the ECDS file ({{ECDS_PATH}}) from envoy/policy.json: the same resource the harness
#    writes (filter, plugin, root and VM id `sidecar-resilience`, the policy as a StringValue,
#    FAIL_OPEN), in YAML so the policy text goes in unescaped.
# 3. Unless RENDER_ONLY=1: starts Envoy (--concurrency 2), and every second checks policy.json;
#    when it changed, writes the ECDS file anew (temp file + rename): Envoy applies the new
#    policy live, without a restart, or rejects it and keeps the old one serving.
#
# Environment: ENVOY_DIR (default: the parent of this script's directory, i.e. envoy/),
# OUT_DIR (default /tmp/sidecar-resilience), WASM (the module's path as Envoy sees it), and one
# variable per placeholder (ADMIN_PORT, LISTEN_PORT, ECDS_PATH, USER_SERVICE_PORT, ...).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ENVOY_DIR=${ENVOY_DIR:-$(dirname "$HERE")}
OUT_DIR=${OUT_DIR:-/tmp/sidecar-resilience}
WASM=${WASM:-/etc/sidecar-resilience/sidecar_resilience.wasm}
POLICY=$ENVOY_DIR/policy.json

say() { echo "render.sh: $*" >&2; }

mkdir -p "$OUT_DIR"

render_bootstrap() {
    text=$(cat "$ENVOY_DIR/bootstrap.yaml"; echo x)
    text=${text%x}
    for name in $(printf '%s' "$text" | grep -o '{{[A-Z0-9_]*}}' | sort -u | tr -d '{}'); do
        if ! value=$(printenv "$name"); then
            say "template placeholder {{$name}} has no value (set $name)"
            exit 1
        fi
        text=$(printf '%s' "$text" | sed "s|{{$name}}|$value|g"; echo x)
        text=${text%x}
    done
    case $text in
        *'{{'*) say "template placeholder left in bootstrap.yaml"; exit 1 ;;
    esac
    printf '%s' "$text" > "$OUT_DIR/bootstrap.yaml"
}

render_ecds() {
    version=$1
    tmp="$ECDS_PATH.tmp.$$"
    {
        cat <<HEAD
version_info: "$version"
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: sidecar-resilience
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: sidecar-resilience
      root_id: sidecar-resilience
      vm_config:
        vm_id: sidecar-resilience
        runtime: envoy.wasm.runtime.v8
        code:
          local:
            filename: "$WASM"
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: |
HEAD
        sed 's/^/          /' "$POLICY"
        # policy.json may lack a final newline; the extra blank line is dropped by YAML.
        echo
        echo "      failure_policy: FAIL_OPEN"
    } > "$tmp"
    mv "$tmp" "$ECDS_PATH"
}

: "${ECDS_PATH:?set ECDS_PATH (the ECDS file, *.yaml)}"
render_bootstrap
render_ecds 1
say "rendered $OUT_DIR/bootstrap.yaml and $ECDS_PATH from $ENVOY_DIR"
[ "${RENDER_ONLY:-0}" = 1 ] && exit 0

(
    version=1
    last=$(cksum < "$POLICY")
    while sleep 1; do
        now=$(cksum < "$POLICY" 2>/dev/null || echo "$last")
        if [ "$now" != "$last" ]; then
            version=$((version + 1))
            render_ecds "$version"
            last=$now
            say "policy.json changed: ECDS version $version written (see Envoy's log: applied or rejected)"
        fi
    done
) &

exec envoy -c "$OUT_DIR/bootstrap.yaml" --concurrency 2 --disable-hot-restart -l "${LOG_LEVEL:-info}"
