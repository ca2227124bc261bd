#!/usr/bin/env bash
# Live overload benchmark (not CI): a live 120 fps camera-like source through earlyexit into a sink
# that plays in time, for 3 minutes per `overload` mode, side by side: the share of frames answered and how,
# and the delay from capture to sink minute by minute.
# Usage: scripts/live-overload.sh [BUNDLE] [SECONDS] [FPS] [WIDTHxHEIGHT] [MODE...] (defaults: 180,
# 120, 640x480, every mode); the bundle defaults to
# data/video-bundle, the EfficientNet-Lite0 bundle scripts/demo-video.sh searches.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-data/video-bundle}
[ -f "$bundle/exits.yaml" ] || { echo "no bundle at $bundle: run scripts/demo-video.sh first, or give one" >&2; exit 1; }
cargo run --release --quiet --example live_overload -- "$bundle" "${@:2}"
