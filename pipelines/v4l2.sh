#!/usr/bin/env bash
# pipelines/v4l2.sh [MODEL] [DEVICE]: run earlyexit on a camera (Video4Linux2) and show it.
#
#   MODEL   a bundle folder, or its exits.yaml (default: data/fmnist-bundle, made by scripts/demo.sh)
#   DEVICE  the camera (default: /dev/video0; list them with: ls /dev/video*)
#
# The pipeline:
#   gst-launch-1.0 -m -e v4l2src device=DEVICE ! videoconvert \
#     ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
#     ! earlyexit model=MODEL post-messages=true ! videoconvert ! autovideosink
#
# - The sink is autovideosink (a window) when a display is there (DISPLAY or WAYLAND_DISPLAY),
#   else fakesink; EARLYEXIT_SINK picks another one.
# - The leaky queue sheds load: when inference is slower than the camera, the oldest frames
#   waiting are dropped instead of letting the delay grow.
# - earlyexit passes every frame through unchanged; the second videoconvert is for the sink.
# - -e: Ctrl-C ends the stream cleanly (EOS).
# Environment: see pipelines/common.sh (EARLYEXIT_MODE, EARLYEXIT_THREADS,
# EARLYEXIT_POST_MESSAGES, EARLYEXIT_SINK, NUM_BUFFERS).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
[ $# -le 2 ] || ee_die "usage: $0 [MODEL] [DEVICE]"
model=$(ee_abspath "${1:-$repo/data/fmnist-bundle}")
device=$(ee_abspath "${2:-/dev/video0}")
cd "$repo"

ee_check_model "$model"
[ -c "$device" ] || ee_die "no camera at $device (found: $(compgen -G '/dev/video*' | tr '\n' ' ' || true))"
default_sink=fakesink
[ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || default_sink=autovideosink
ee_parts "$model" "$default_sink"

ee_run -m -e \
  v4l2src device="$device" ! videoconvert \
  ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! \
  "${limit[@]}" "${element[@]}" ! videoconvert ! "${sink[@]}"
