#!/usr/bin/env bash
# Runs the whole test suite, first setting up what the tests need and this
# machine lacks. This is the README's test command; .ci/run runs it too.
#
#   scripts/test.sh [cargo test arguments...]
#
# Set up once and reused: a Python venv with the OpenTelemetry SDK
# (tests/python/requirements.txt), under ${SPANLAKE_CACHE:-~/.cache/spanlake};
# the OpenTelemetry JS SDK's Zipkin exporter in tests/node/node_modules
# (npm ci from tests/node/package-lock.json); Debian's chromium,
# chromium-driver and postgresql-client (psql) when root (or sudo) can
# install them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/spanlake-target}"
cache="${SPANLAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spanlake}"
mkdir -p "$cache"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -qq >/dev/null 2>&1 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

# Python OpenTelemetry SDK, for the tests that use its real exporters.
setup_python() {
  local venv="$cache/venv" requirements=tests/python/requirements.txt
  if cmp -s "$requirements" "$venv/.requirements" 2>/dev/null && [ -x "$venv/bin/python" ]; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3 python3-venv || return 1
  rm -rf "$venv"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; } || return 1
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" || return 1
  cp "$requirements" "$venv/.requirements"
}

if setup_python; then
  export SPANLAKE_TEST_PYTHON="$cache/venv/bin/python"
else
  echo "!!! could not set up the Python venv: the Python SDK tests will skip (and fail under CI=true)" >&2
fi

# OpenTelemetry JS SDK, for the Zipkin exporter test.
setup_node() {
  command -v npm >/dev/null || apt_install nodejs npm || return 1
  local lock=tests/node/package-lock.json installed=tests/node/node_modules/.package-lock.json
  if [ -f "$installed" ] && [ "$installed" -nt "$lock" ]; then
    return 0
  fi
  npm ci --prefix tests/node --silent --no-audit --no-fund >/dev/null || return 1
}

if setup_node; then
  export SPANLAKE_TEST_NODE="$(command -v node)"
else
  echo "!!! could not install tests/node: the Node.js Zipkin exporter test will skip (and fail under CI=true)" >&2
fi

# Debian's Chromium and ChromeDriver, for the UI tests.
setup_chromium() {
  if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    apt_install chromium chromium-driver || return 1
  fi
}

if setup_chromium; then
  export SPANLAKE_TEST_CHROMEDRIVER="$(command -v chromedriver)"
else
  echo "!!! could not install chromium and chromium-driver: the UI tests will skip (and fail under CI=true)" >&2
fi

# psql, for the PostgreSQL wire protocol tests.
if command -v psql >/dev/null || apt_install postgresql-client; then
  export SPANLAKE_TEST_PSQL="$(command -v psql)"
else
  echo "!!! could not install postgresql-client: the psql tests will skip (and fail under CI=true)" >&2
fi

# The test build must reuse the binary's dependencies, not build them again.
scripts/check-features.sh

cargo test --workspace "$@"
