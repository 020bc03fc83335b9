# Shared settings of Pulse's scripts: where cached installs, builds and local-stack data live.
# Everything is outside the clone so that later runs (and CI on the same machine) reuse it.
# shellcheck shell=bash

PULSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PULSE_HOME="${PULSE_HOME:-$HOME/.cache/pulse}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PULSE_HOME/target}"

TANSU_VERSION=0.6.0
TANSU_ROOT="${TANSU_ROOT:-$HOME/.local/tansu}"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

ORT_VERSION=1.31.1
ORT_DIR="${ORT_DIR:-$HOME/.local/onnxruntime/$ORT_VERSION}"
export ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

PULSE_BIN="$CARGO_TARGET_DIR/release/pulse"
DEVCQL_BIN="$CARGO_TARGET_DIR/release/pulse-devcql"

# Local stack: data, logs and pid files; ports can be moved to run a second stack.
PULSE_STACK_DIR="${PULSE_STACK_DIR:-$PULSE_HOME/stack}"
KAFKA_PORT="${PULSE_STACK_KAFKA_PORT:-9092}"
CQL_PORT="${PULSE_STACK_CQL_PORT:-9042}"
REDIS_PORT="${PULSE_STACK_REDIS_PORT:-6379}"

if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

say() { printf '%s\n' "$*" >&2; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
