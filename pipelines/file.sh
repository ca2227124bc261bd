#!/usr/bin/env bash
# pipelines/file.sh [MODEL] [FILE]: run earlyexit over a video file, as fast as it decodes, and
# print one bus message per frame (which stage the frame left at, its class, cost, time).
#
#   MODEL  a bundle folder, or its exits.yaml (default: data/fmnist-bundle, made by scripts/demo.sh)
#   FILE   any file decodebin plays (default: data/fmnist/fmnist-test-b-5k.mkv)
#
# The pipeline:
#   gst-launch-1.0 -m filesrc location=FILE ! decodebin ! videoconvert ! queue \
#     ! earlyexit model=MODEL mode=early-exit threads=0 post-messages=true ! fakesink
#
# videoconvert hands earlyexit one of the formats it takes (RGB, BGR, RGBA, BGRA, RGBx, BGRx,
# GRAY8); earlyexit resizes to the model's input size itself, so no videoscale is needed. The
# queue lets decoding (one thread) overlap inference (another).
# Environment: see pipelines/common.sh (EARLYEXIT_MODE, EARLYEXIT_THREADS,
# EARLYEXIT_POST_MESSAGES, EARLYEXIT_SINK, NUM_BUFFERS). Example, 100 frames, the full backbone:
#   NUM_BUFFERS=100 EARLYEXIT_MODE=full pipelines/file.sh data/fmnist-bundle data/fmnist/fmnist-test-b-5k.mkv
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
[ $# -le 2 ] || ee_die "usage: $0 [MODEL] [FILE]"
model=$(ee_abspath "${1:-$repo/data/fmnist-bundle}")
file=$(ee_abspath "${2:-$repo/data/fmnist/fmnist-test-b-5k.mkv}")
cd "$repo"

ee_check_model "$model"
[ -f "$file" ] || ee_die "no such file: $file"
ee_parts "$model"

ee_run -m \
  filesrc location="$file" ! decodebin ! videoconvert ! queue ! \
  "${limit[@]}" "${element[@]}" ! "${sink[@]}"
