#!/usr/bin/env bash
# Fails when a dependency gets other features in `cargo test` than in
# `cargo build`: each such crate (and everything above it, DataFusion
# included) would then be compiled twice, once for each. Cargo turns on a
# dev-dependency's features only when tests or benches are built, so a test
# crate that asks for one more feature of, say, serde splits the two builds.
# The mend is to ask for that feature in the normal dependency too (see the
# comments in Cargo.toml), or to drop the test crate.
set -euo pipefail
cd "$(dirname "$0")/.."

features() {
  cargo tree --workspace --locked --edges "$1" --format '{p} [{f}]' --prefix none | sed 's/ (\*)$//' | sort -u
}
build=$(features normal,build)
test=$(features normal,build,dev)

# Crates in both builds whose feature lists differ.
differ=$(comm -3 <(echo "$build") <(echo "$test") | awk '{print $1, $2}' | sort | uniq -d)
if [ -n "$differ" ]; then
  echo "!!! these crates get other features in the test build than in the binary's:" >&2
  while read -r name version; do
    echo "  build: $(grep -F "$name $version " <<<"$build")" >&2
    echo "  test:  $(grep -F "$name $version " <<<"$test")" >&2
  done <<<"$differ"
  exit 1
fi
echo "features: the test build reuses every dependency of the binary's build"
