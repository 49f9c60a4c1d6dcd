#!/usr/bin/env bash
# End-to-end benchmark: ingest through a real release server, compaction,
# bytes per span, and query latencies beside DuckDB and chdb on the same
# spans. Run by hand; see BENCHMARKS.md for results.
#
#   benches/e2e.sh [quick|long|huge] [extra run.py flags]
#
# quick: 1M spans; long: 10M spans; huge: 100M spans, then trace lookups
# (spanlake and DuckDB) and the API, no chdb. Needs ~2 GiB (quick), ~20 GiB (long) or
# ~15 GiB (huge, no chdb copy) under /var/tmp/spanlake-bench. The Python
# venv with DuckDB and chdb goes to ${SPANLAKE_CACHE:-~/.cache/spanlake}/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-quick}"
shift || true
case "$mode" in
  quick) spans=1000000 ;;
  long) spans=10000000 ;;
  huge) spans=100000000; set -- --skip-sql "$@" ;;
  *) echo "usage: $0 [quick|long|huge] [run.py flags]" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/spanlake-target}"
cargo build --release --quiet --bin spanlake

cache="${SPANLAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spanlake}"
venv="$cache/bench-venv" requirements=benches/e2e/requirements.txt
if ! cmp -s "$requirements" "$venv/.requirements" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.requirements"
fi

exec "$venv/bin/python" benches/e2e/run.py --binary "$CARGO_TARGET_DIR/release/spanlake" --spans "$spans" "$@"
