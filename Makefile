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

# Where the integration tests (tests/support) and the demo find Envoy and the filter. Both have
# the same defaults built in, so plain `cargo test` works after `make deps wasm`.
# Recursive (=): the glob is looked at when a recipe runs, i.e. after `deps` installed Envoy.
ENVOY_BIN   ?= $(firstword $(wildcard $(ROOT)/.venv/lib/python3*/site-packages/envoy/_bin/envoy))
FILTER_WASM ?= $(ROOT)/target/wasm32-wasip1/release/sidecar_resilience.wasm
export ENVOY_BIN FILTER_WASM

# wasm-bindgen-test runs the core's unit tests on wasm32 in Node.
WASM_TEST_ENV := CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(ROOT)/.tools/bin/wasm-bindgen-test-runner

.PHONY: help deps deps-bench wasm test unit-native unit-wasm integration validate lint run clean
.PHONY: deps-oci oci docker-run
.PHONY: bench

help:
	@echo "make run         build and start the demo: Envoy + the filter + demo upstreams"
	@echo "make test        all tests: native + wasm32 unit tests, bootstrap validation, integration"
	@echo "make deps        install rust targets, Envoy (.venv) and wasm-bindgen-cli (.tools)"
	@echo "make deps-bench  also install wrk (apt-get; needs root or sudo)"
	@echo "make bench       wrk side by side: Envoy alone, native breaker/retry, the filter (~2 min)"
	@echo "make wasm        build the filter: $(FILTER_WASM)"
	@echo "make validate    envoy --mode validate on every shipped bootstrap and the filter config"
	@echo "make lint        cargo fmt --check and clippy (native and wasm32-wasip1), warnings denied"
	@echo "make clean       remove build output (keeps .venv and .tools)"
	@echo "make oci         OCI image of the filter (target/oci) + rendered istio/ manifests;"
	@echo "                 make oci PUSH=HOST[:PORT]/REPO[:TAG] also pushes it"
	@echo "make docker-run  docker compose: the official Envoy image + the filter + demo upstreams"
	@echo "make deps-oci    install docker-registry (apt-get; needs root or sudo), for tests/oci.rs"

# install-kafka.sh (the event tests' broker) is another engineer's; run it when it exists.
deps:
	@scripts/install-deps.sh
	@if [ -x scripts/install-kafka.sh ]; then scripts/install-kafka.sh; fi

deps-bench: deps
	@scripts/install-deps.sh bench

wasm: deps
	$(CARGO) build --target wasm32-wasip1 --release --lib

test: deps lint unit-native unit-wasm wasm validate integration

unit-native: deps
	$(CARGO) test --lib --bins

unit-wasm: deps
	$(WASM_TEST_ENV) $(CARGO) test --lib --target wasm32-unknown-unknown

# Integration tests start real Envoys with the built filter (tests/support).
integration: deps deps-oci wasm
	$(CARGO) test --test '*'

# Renders each envoy/*.yaml bootstrap with sample values and the filter config with the seed
# policy, and runs `envoy --mode validate` on each (the harness does the rendering).
validate: deps wasm
	$(CARGO) test --test foundation validate_shipped

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --lib --tests -- -D warnings
	$(CARGO) clippy --lib --target wasm32-wasip1 -- -D warnings

# src/bin/demo.rs (uses tests/support via #[path]): Envoy with envoy/policy.json in front of
# demo upstreams, a scripted mix of requests, an order.created event published through Envoy to
# the kafka-bridge binary (built here too) over Tansu and read back by the consumer group, then
# the admin URL; Ctrl-C stops everything. DEMO_EXIT=1 stops at the end instead.
run: deps wasm
	$(CARGO) build --quiet --bin kafka-bridge
	$(CARGO) run --quiet --bin demo

# src/bin/bench.rs (uses tests/support via #[path]): wrk against Envoys from envoy/bench/*.yaml
# (no filter, native outlier detection / retry, the filter closed / open / retrying) on loopback,
# and events/s through the filter vs. straight to kafka-bridge over Tansu, in interleaved rounds;
# a table on stdout, the same figures in target/bench/results.json.
# BENCH_ARGS passes options, e.g. BENCH_ARGS=--profile (`cargo run --bin bench -- --help`).
bench: deps-bench wasm
	$(CARGO) build --quiet --bin kafka-bridge
	$(CARGO) run --quiet --bin bench -- $(BENCH_ARGS)

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

# The filter as a Wasm OCI image (src/bin/wasm-oci): target/oci/layout (OCI image layout) and
# target/oci/istio/ (istio/*.yaml pinned to the image: url, sha256 = manifest digest,
# imagePullPolicy IfNotPresent; file:// plugins copied as is). No docker engine needed.
# PUSH=HOST[:PORT]/REPO[:TAG] pushes it (loopback over plain HTTP; REGISTRY_USERNAME /
# REGISTRY_PASSWORD for registries that want credentials).
OCI_OUT ?= $(ROOT)/target/oci
oci: wasm
	$(CARGO) run --quiet --bin wasm-oci -- build --wasm $(FILTER_WASM) --out $(OCI_OUT) \
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
