# sidecar-resilience: resilience4j for Envoy as a proxy-wasm filter.
#   make run    install what is missing, build, start the demo (Envoy + demo upstreams)
#   make test   install what is missing, then every test (what .ci/run calls)
# See `make help` for the rest.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# rustup installs cargo into ~/.cargo/bin, which a fresh root shell (CI) may not have on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)

ROOT  := $(CURDIR)
CARGO ?= cargo

# Where the test harness (tests/support, used by the integration tests, the demo and the bench)
# finds Envoy and the filter. It has the same defaults built in (FILTER_WASM: tools/common's
# envoy_config), so plain `cargo test -p sidecar-resilience-tests` works after `make deps wasm`
# and building the tools (see `integration`).
# Recursive (=): the glob is looked at when a recipe runs, i.e. after `deps` installed Envoy.
ENVOY_BIN   ?= $(firstword $(wildcard $(ROOT)/.venv/lib/python3*/site-packages/envoy/_bin/envoy))
FILTER_WASM ?= $(ROOT)/target/wasm32-wasip1/release/sidecar_resilience.wasm
export ENVOY_BIN FILTER_WASM

# wasm-bindgen-test runs the core's unit tests on wasm32 in Node.
WASM_TEST_ENV := CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(ROOT)/.tools/bin/wasm-bindgen-test-runner

.PHONY: help deps deps-bench wasm test unit-native unit-wasm integration validate lint run clean
.PHONY: deps-oci deps-prometheus oci docker-run
.PHONY: bench fuzz soak

help:
	@echo "make run         build and start the demo: Envoy + the filter + demo upstreams"
	@echo "make test        all tests: native + wasm32 unit tests, bootstrap validation, integration"
	@echo "make deps        install rust targets, Envoy (.venv), wasm-bindgen-cli (.tools), binaryen (wasm-opt)"
	@echo "make deps-bench  also install wrk and h2load (apt-get; needs root or sudo)"
	@echo "make bench       wrk side by side: Envoy alone, native breaker/retry, the filter (~2 min)"
	@echo "make wasm        build the filter and shrink it with wasm-opt: $(FILTER_WASM)"
	@echo "make validate    envoy --mode validate on every shipped bootstrap and the filter config"
	@echo "make lint        cargo fmt --check and clippy (native and wasm32-wasip1), warnings denied"
	@echo "make fuzz        the property tests (src/fuzz_tests.rs) with FUZZ_ITERATIONS inputs each (default 200000)"
	@echo "make soak        real Envoy under load with policy pushes for SOAK_SECS (default 180); fails if RSS grows"
	@echo "make clean       remove build output (keeps .venv and .tools)"
	@echo "make oci         OCI image of the filter (target/oci) + rendered istio/ manifests;"
	@echo "                 make oci PUSH=HOST[:PORT]/REPO[:TAG] also pushes it"
	@echo "make docker-run  docker compose: the official Envoy image + the filter + demo upstreams"
	@echo "make deps-oci    install docker-registry (apt-get; needs root or sudo), for tests/oci.rs"

# install-deps.sh: rust targets, Envoy, wasm-bindgen; install-kafka.sh: the Kafka broker (Tansu)
# of the events tests, the demo and the bench.
deps:
	@scripts/install-deps.sh
	@scripts/install-kafka.sh

deps-bench: deps
	@scripts/install-deps.sh bench

# cargo's output, then binaryen's wasm-opt -Oz in place (scripts/optimize-wasm.sh; installed by
# install-deps.sh): the file Envoy loads is the optimized one.
wasm: deps
	$(CARGO) build -p sidecar-resilience --target wasm32-wasip1 --release --lib
	@scripts/optimize-wasm.sh $(FILTER_WASM)

test: deps lint unit-native unit-wasm wasm validate integration

# The filter's unit tests first (they build nothing but log), then the
# tools' (tools/).
TOOLS := tools-common r4j-import wasm-oci kafka-bridge demo bench
unit-native: deps
	$(CARGO) test -p sidecar-resilience --lib
	$(CARGO) test $(addprefix -p ,$(TOOLS))

unit-wasm: deps
	$(WASM_TEST_ENV) $(CARGO) test -p sidecar-resilience --lib --target wasm32-unknown-unknown

# Integration tests (tests/*.rs) start real Envoys with the built filter (the harness,
# tests/support) and run the tools they test, built first: the harness finds them in target/.
TESTED_TOOLS := r4j-import wasm-oci kafka-bridge
integration: deps deps-oci deps-prometheus wasm
	$(CARGO) build $(addprefix -p ,$(TESTED_TOOLS))
	$(CARGO) test -p sidecar-resilience-tests --test '*'

# Renders each envoy/*.yaml bootstrap with sample values and the filter config with the seed
# policy, and runs `envoy --mode validate` on each (the harness does the rendering).
validate: deps wasm
	$(CARGO) test -p sidecar-resilience-tests --test foundation validate_shipped

# Every crate of the workspace natively; the filter also as Envoy loads it.
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p sidecar-resilience --lib --target wasm32-wasip1 -- -D warnings

# tools/demo (uses the harness): Envoy with envoy/policy.json in front of demo upstreams, a
# scripted mix of requests, an order.created event published through Envoy to the kafka-bridge
# tool (built here too) over Tansu and read back by the consumer group, then the admin URL;
# Ctrl-C stops everything. DEMO_EXIT=1 stops at the end instead.
run: deps wasm
	$(CARGO) build --quiet -p kafka-bridge
	$(CARGO) run --quiet -p demo

# tools/bench (uses the harness): wrk against Envoys from envoy/bench/*.yaml (no filter, a
# do-nothing Wasm filter (tools/noop-filter, the floor), native outlier detection / retry, the
# filter closed / open / retrying) on loopback, events/s through the filter vs. through Envoy
# without it vs. straight to kafka-bridge over Tansu, in interleaved rounds; then h2load at a
# fixed rate (latency p50/p99/p99.9); the goals as ratios; a table on stdout, the same figures
# in target/bench/results.json.
# BENCH_ARGS passes options, e.g. BENCH_ARGS=--profile (`cargo run -p bench -- --help`).
bench: deps-bench wasm
	$(CARGO) build --quiet -p kafka-bridge
	$(CARGO) build --quiet -p noop-filter --target wasm32-wasip1 --release
	$(CARGO) run --quiet -p bench -- $(BENCH_ARGS)

# The property tests of `make test` (policy parser, events codec, shared-state decoders; a
# deterministic generator in src/fuzz_tests.rs) with many more inputs, optimized. FUZZ_SEED
# picks another input sequence. Prints the inputs run per property.
FUZZ_ITERATIONS ?= 200000
fuzz:
	FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) $(CARGO) test -p sidecar-resilience --lib --release fuzz_tests -- --nocapture --test-threads 2

# A soak against a real Envoy (tests/soak.rs, ignored in `make test`): steady traffic through
# guarded and unguarded routes with policy pushes, Envoy's RSS printed over time; fails if it
# keeps growing. SOAK_SECS sets the length.
SOAK_SECS ?= 180
soak: deps wasm
	SOAK_SECS=$(SOAK_SECS) $(CARGO) test -p sidecar-resilience-tests --test soak -- --ignored --nocapture

clean:
	$(CARGO) clean

# tests/oci.rs pushes to a real registry on loopback: Debian's docker-registry (the reference
# OCI distribution server). The test starts its own on a free port; the package's service is
# not used.
deps-oci:
	@command -v docker-registry >/dev/null 2>&1 || { \
	  echo "deps-oci: installing docker-registry (apt-get)"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; }

# tests/observability.rs scrapes the test Envoys with a real Prometheus and runs `promtool test
# rules` on istio/observability/'s alert rules: Debian's prometheus (2.42, with promtool). The
# test starts its own on a free port; the package's service is not used.
deps-prometheus:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  echo "deps-prometheus: installing prometheus (apt-get)"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# The filter as a Wasm OCI image (tools/wasm-oci): target/oci/layout (OCI image layout) and
# target/oci/istio/ (istio/*.yaml pinned to the image: url, sha256 = manifest digest,
# imagePullPolicy IfNotPresent; file:// plugins copied as is). No docker engine needed.
# PUSH=HOST[:PORT]/REPO[:TAG] pushes it (loopback over plain HTTP; REGISTRY_USERNAME /
# REGISTRY_PASSWORD for registries that want credentials).
OCI_OUT ?= $(ROOT)/target/oci
oci: wasm
	$(CARGO) run --quiet -p wasm-oci -- build --wasm $(FILTER_WASM) --out $(OCI_OUT) \
	  $(if $(PUSH),--image $(PUSH) --push)

# docker compose (envoy/compose/docker-compose.yaml): the official Envoy image, pinned to the
# version in .venv, runs envoy/bootstrap.yaml and envoy/policy.json (the files `make run` uses)
# with the built filter, in front of demo upstreams. Editing envoy/policy.json while it runs
# changes the policy live (ECDS).
docker-run: wasm
	@if docker compose version >/dev/null 2>&1; then compose="docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then compose=docker-compose; \
	else echo "docker-run: needs docker compose and a docker engine (the native path: make run)" >&2; exit 1; fi; \
	$$compose -f envoy/compose/docker-compose.yaml up
