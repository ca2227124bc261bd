#!/usr/bin/env bash
# Endurance benchmark (not CI): 1,000,000 frames through one earlyexit element, then 1,000
# state cycles of one pipeline, in one process, with memory at each tenth of each: RSS, and the
# heap the allocator has handed out (RSS that grows while that stays flat is memory the allocator
# keeps after it was freed, not a leak).
# Usage: scripts/endurance.sh [BUNDLE] [FRAMES] [CYCLES]; the bundle defaults to the demo's.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-data/fmnist-bundle}
[ -f "$bundle/exits.yaml" ] || { echo "no bundle at $bundle: run scripts/demo.sh first, or give one" >&2; exit 1; }
cargo run --release --quiet --example endurance -- "$bundle" "${2:-1000000}" "${3:-1000}"
