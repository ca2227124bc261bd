#!/usr/bin/env bash
# Many streams in one process (a benchmark, not CI): STREAMS copies of CLIP through BUNDLE,
# with sessions shared and not, one process each, side by side.
# Usage: scripts/many-streams.sh BUNDLE CLIP [STREAMS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 BUNDLE CLIP [STREAMS]" >&2; exit 1; }
cargo build --release --quiet --example many_streams
for shared in true false; do
  target/release/examples/many_streams "$1" "$2" "${3:-8}" "$shared"
done
